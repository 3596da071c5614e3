"""`uvd checkpoint-to-file RUN [--step N] --out FILE`: a sharded checkpoint as one torch.save file."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import argparse

    from train import checkpoint

    p = argparse.ArgumentParser(prog="uvd checkpoint-to-file", description="Convert a sharded (DCP) checkpoint "
                                "into one torch.save file {model, optim, train_state} with full tensors.")
    p.add_argument("run", help="training run folder or one checkpoint folder")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--out", required=True, help="file to write (any fsspec URL)")
    args = p.parse_args(argv)
    try:
        print(checkpoint.to_single_file(args.run, args.out, args.step))
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd checkpoint-to-file: {err}", file=sys.stderr)
        return 1
    return 0
