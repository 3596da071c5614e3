"""`uvd <command> …`: each command lives in its own module and parses its own arguments.

Commands are looked up by name and imported only when run, so `uvd inspect` never pays for
importing torch, and `uvd` imports none of the other packages at import time.
"""
from __future__ import annotations

import importlib
import logging
import sys

# name → (module exposing main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("uvd.build_cmd", "build sentence shards from a config (Ray)"),
    "inspect": ("uvd.inspect", "summarise a shard, a dataset folder or an output; draw a contact sheet"),
    "validate": ("uvd.validate", "check an output against its manifest; non-zero exit on problems"),
    "stats": ("uvd.stats_report", "pictures of an output: mixture, sentence lengths, failures, shard sizes"),
    "plan": ("uvd.plan_cmd", "units, expected sentences/images/tokens/bytes and CPU/GPU-hours of a config"),
    "demo": ("uvd.demo", "write sample inputs, build, validate, inspect: end to end in minutes"),
    "tokenize": ("tokenize_job.cli_tokenize", "sentence shards → token shards with a VQGAN (Ray Data actor pool)"),
    "tokenizer train": ("tokenize_job.cli_tokenizer_train", "train a VQGAN tokenizer on sentence-shard images"),
    "train": ("train.cli_train", "train a LLaMA-style model on token shards (torchrun -m train for several devices)"),
    "generate": ("train.cli_generate", "visual prompting: continue a sentence of images with a trained model"),
    "pseudo-label": ("renderers.labeler", "label a folder of photos with a local expert model (depth, normals, segmentation files)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: uvd <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`uvd <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if argv[:2] == ["tokenizer", "train"]:  # two-word command
        name, rest = "tokenizer train", argv[2:]
    if name not in COMMANDS:
        print(f"uvd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # reports, as print() did
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
