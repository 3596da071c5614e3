"""`uvd tokenize SENTENCES_URL --tokenizer DIR [--out URL]`: sentence shards → token shards (Ray Data)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd tokenize", description=__doc__)
    p.add_argument("sentences", help="build output holding manifest.json / sentences/ (any fsspec URL)")
    p.add_argument("--tokenizer", required=True,
                   help="local directory: config.json + weights, under any name open-MUSE, LVM or diffusers use")
    p.add_argument("--out", help="output root; tokens go to <out>/tokens/<tokenizer-id>/ (default: the sentences URL)")
    p.add_argument("--actors", type=int, default=0, help="encoder actors (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="images per forward pass on GPU (64: the best measured, BENCHMARKS.md)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per actor (default: its CPUs)")
    p.add_argument("--no-ray", action="store_true", help="run in this process (no Ray)")
    args = p.parse_args(argv)

    from tokenize_job.job import tokenize

    try:
        result = tokenize(args.sentences, args.tokenizer, args.out, use_ray=not args.no_ray, actors=args.actors,
                          batch_size=args.batch_size, image_batch=max(args.batch_size, 1), threads=args.threads)
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd tokenize: {err}", file=sys.stderr)
        return 2
    print(f"tokens:   {result.root}\nmanifest: {result.root}/manifest.json")
    for name, err in result.errors.items():
        print(f"unit {name} failed: {err}", file=sys.stderr)
    return 0 if result.ok else 1
