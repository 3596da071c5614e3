"""`uvd export-hf RUN [--step N] --out DIR`: a run's checkpoint as a Hugging Face LlamaForCausalLM folder."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="uvd export-hf", description="Export a training run's checkpoint as a "
                                "Hugging Face LlamaForCausalLM folder (config.json, model.safetensors, "
                                "generation_config.json); `uvd generate --model DIR` accepts it.")
    p.add_argument("run", help="training run folder (its checkpoints/) or one checkpoint folder")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    args = p.parse_args(argv)
    from train.export_hf import export_hf

    try:
        out = export_hf(args.run, args.step, args.out, args.dtype)
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd export-hf: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0
