"""`uvd build CONFIG [--out URL] [--workers N] [--prune] [--takeover] [--shared-fs] [--cpus-per-unit C] [--memory-per-unit-mb M]`."""
from __future__ import annotations

import argparse
import sys

from uvd.config import load_config, parse_model
from uvd.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd build", description="Build sentence shards from a config.")
    p.add_argument("config", help="YAML build config")
    p.add_argument("--out", help="output URL (local path, s3://, gs://, memory://); default: the config's `out`")
    p.add_argument("--workers", type=int, help="CPUs for a local Ray (default: config run.workers; 0 = all)")
    p.add_argument("--no-ray", action="store_true", help="run units one after another in this process (debugging)")
    p.add_argument("--prune", action="store_true",
                   help="remove the files (shard, audit, stats) of units on disk that are not in this plan")
    p.add_argument("--takeover", action="store_true",
                   help="take the output over from a build whose lease is stale (no heartbeat for "
                        "UVD_LEASE_STALE_S, default 60 s); a live build is never taken over")
    p.add_argument("--shared-fs", action="store_true",
                   help="local output/input paths are one filesystem mounted on every Ray node (NFS, ...); "
                        "without it a build on a cluster of several nodes refuses them (config: run.shared_fs)")
    p.add_argument("--cpus-per-unit", type=float, help="Ray CPUs each unit reserves (config: run.cpus_per_unit)")
    p.add_argument("--memory-per-unit-mb", type=int,
                   help="Ray memory each unit reserves, MiB (config: run.memory_per_unit_mb; 0 = none)")
    args = p.parse_args(argv)
    from uvd.lease import LeaseHeld, LeaseLost
    from uvd.runner import build

    try:
        cfg = load_config(args.config)
        run = {k: v for k, v in (("cpus_per_unit", args.cpus_per_unit),
                                 ("memory_per_unit_mb", args.memory_per_unit_mb)) if v is not None}
        if run:  # flags over config keys, validated like the config
            cfg = cfg.model_copy(update={"run": parse_model(type(cfg.run), {**cfg.run.model_dump(), **run}, "flags")})
        # Planning reads the inputs (file lists, metadata): a bad path or file is a config error too.
        summary = build(cfg, out=args.out, workers=args.workers, use_ray=not args.no_ray, prune=args.prune,
                        takeover=args.takeover, shared_fs=args.shared_fs)
    except (ConfigError, LeaseHeld) as err:
        print(f"uvd build: {err}", file=sys.stderr)
        return 2
    except LeaseLost as err:
        print(f"uvd build: {err}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0 if summary.succeeded else 1
