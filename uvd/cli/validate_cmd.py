"""`uvd validate OUT [--sample N]`: the manifest against the files, on Ray; exit non-zero with a list of problems."""
from __future__ import annotations

import argparse

from uvd.manifest import read_manifest
from uvd.validate import validate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd validate", description=__doc__)
    p.add_argument("out", help="output folder or URL of a build")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    p.add_argument("--sample", type=int, metavar="N", help="check the shards of N random units only (quick pass)")
    p.add_argument("--no-ray", action="store_true", help="check in this process instead of Ray tasks")
    args = p.parse_args(argv)
    warnings: list[str] = []
    problems = validate(args.out, decode_images=not args.no_decode, sample=args.sample, use_ray=not args.no_ray,
                        warnings=warnings)
    for w in warnings:  # not failures: leftovers an earlier plan wrote, which nothing reads as data
        print(f"WARNING: {w}")
    if problems:
        print(f"{len(problems)} problems:")
        for prob in problems:
            print("  " + prob)
        return 1
    t = read_manifest(args.out.rstrip("/"))["totals"]
    print(f"OK: {t['units_done']} units, {t['sentences']} sentences, {t['images']} images, "
          f"inputs {t['inputs']} = ok {t['ok']} + failed {t['failed']}"
          + (f" (shards of {args.sample} sampled units checked)" if args.sample else ""))
    return 0
