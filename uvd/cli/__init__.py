"""`uvd [-v|-q] <command> …`: the CLI layer, the only part of `uvd` that names the upper packages.

Each command lives in its own module and parses its own arguments. Commands are looked up by
name and imported only when run, so `uvd inspect` never pays for importing torch. Before a
command runs, the CLI sets the one logging configuration (`-v` debug and Ray Data's own
progress, `-q` warnings and the final summary only), the progress mode (a bar on a terminal,
a line every UVD_PROGRESS_INTERVAL seconds otherwise, default 10) and registers the
project's plug-ins with the core's registry.
"""
from __future__ import annotations

import importlib
import os
import sys

from uvd import logs, progress
from uvd.cli.plugins import register_builtin

# name → (module exposing main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("uvd.cli.build_cmd", "build sentence shards from a config (Ray)"),
    "inspect": ("uvd.cli.inspect_cmd", "summarise a shard, a dataset folder or an output; draw a contact sheet"),
    "validate": ("uvd.cli.validate_cmd", "check an output against its manifest; non-zero exit on problems"),
    "stats": ("uvd.cli.stats_cmd", "pictures of an output: mixture, sentence lengths, failures, shard sizes"),
    "plan": ("uvd.cli.plan_cmd", "units, expected sentences/images/tokens/bytes and CPU/GPU-hours of a config"),
    "demo": ("demo.run", "write sample inputs, build, validate, inspect: end to end in minutes"),
    "tokenize": ("uvd.cli.tokenize_cmd", "sentence shards → token shards with a VQGAN (Ray Data actor pool)"),
    "tokenizer train": ("uvd.cli.tokenizer_train_cmd", "train a VQGAN tokenizer on sentence-shard images"),
    "train": ("uvd.cli.train_cmd", "train a LLaMA-style model on token shards (torchrun -m train for several devices)"),
    "generate": ("uvd.cli.generate_cmd", "visual prompting: continue a sentence of images with a trained model"),
    "export-hf": ("uvd.cli.export_hf_cmd", "a training run's checkpoint as a Hugging Face LlamaForCausalLM folder"),
    "checkpoint-to-file": ("uvd.cli.checkpoint_to_file_cmd", "a sharded (DCP) checkpoint as one torch.save file"),
    "view": ("uvd.cli.view_cmd", "look at a build in the browser: sentences, failures, mixture, tokens"),
    "pseudo-label": ("uvd.cli.pseudo_label_cmd", "label a folder of photos with a local expert model (depth, normals, segmentation files)"),
}
VERBOSE, QUIET = ("-v", "--verbose"), ("-q", "--quiet")
# The project's loggers, named after their packages: INFO by default, third parties at WARNING.
PROJECT_LOGGERS = ("uvd", "sources", "renderers", "sentence_builders", "tokenize_job", "train", "demo")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: uvd [-v | -q] <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "  -v, --verbose  debug messages, and Ray Data's own progress and logs",
              "  -q, --quiet    warnings and the final summary only, no progress",
              "", "`uvd <command> --help` for a command's options."]
    return "\n".join(lines)


def setup(verbosity: int) -> None:
    """Logging, progress mode and plug-ins, as every command expects them."""
    logs.configure(verbosity, PROJECT_LOGGERS)
    interval = float(os.environ.get("UVD_PROGRESS_INTERVAL", "10"))
    progress.configure("off" if verbosity < 0 else "bar" if sys.stderr.isatty() else "lines", interval)
    register_builtin()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v / -q are global: accepted before the command or among its options.
    verbosity = sum(a in VERBOSE for a in argv) - sum(a in QUIET for a in argv)
    argv = [a for a in argv if a not in VERBOSE + QUIET]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if argv[:2] == ["tokenizer", "train"]:  # two-word command
        name, rest = "tokenizer train", argv[2:]
    if name not in COMMANDS:
        print(f"uvd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    setup(max(-1, min(1, verbosity)))
    module = importlib.import_module(COMMANDS[name][0])
    ray_before = _ray_started()
    try:
        return int(module.main(rest) or 0)
    finally:
        if _ray_started() and not ray_before:
            # Now, not at exit: Ray's exit hook first sleeps half a second for log lines to drain,
            # every command; our results are the shards and the summary already printed.
            from uvd.runner import stop_ray

            stop_ray()


def _ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
