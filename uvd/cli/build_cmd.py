"""`uvd build CONFIG [--out URL] [--workers N]`."""
from __future__ import annotations

import argparse
import sys

from uvd.config import load_config
from uvd.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd build", description="Build sentence shards from a config.")
    p.add_argument("config", help="YAML build config")
    p.add_argument("--out", help="output URL (local path, s3://, gs://, memory://); default: the config's `out`")
    p.add_argument("--workers", type=int, help="CPUs for a local Ray (default: config run.workers; 0 = all)")
    p.add_argument("--no-ray", action="store_true", help="run units one after another in this process (debugging)")
    args = p.parse_args(argv)
    from uvd.runner import build

    try:
        cfg = load_config(args.config)
        # Planning reads the inputs (file lists, metadata): a bad path or file is a config error too.
        summary = build(cfg, out=args.out, workers=args.workers, use_ray=not args.no_ray)
    except ConfigError as err:
        print(f"uvd build: {err}", file=sys.stderr)
        return 2
    print(summary.report())
    return 0 if summary.succeeded else 1
