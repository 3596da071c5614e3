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
    p.add_argument("--batch-size", type=int,
                   help="images per forward pass on GPU (default: run.tokenize.batch_size, 64: the best measured, "
                        "BENCHMARKS.md)")
    p.add_argument("--config", help="a build config whose `run.tokenize` keys size the actor pool (docs/cluster.md)")
    p.add_argument("--num-gpus", type=float, help="GPUs per encoder actor (run.tokenize.num_gpus, default 1)")
    p.add_argument("--cpus-per-actor", type=float, help="CPUs per encoder actor (run.tokenize.cpus_per_actor)")
    p.add_argument("--min-actors", type=int, help="smallest pool (run.tokenize.min_actors; default one per GPU)")
    p.add_argument("--max-actors", type=int, help="largest pool (run.tokenize.max_actors; default = min)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per actor (default: its CPUs)")
    p.add_argument("--no-ray", action="store_true", help="run in this process (no Ray)")
    args = p.parse_args(argv)

    from tokenize_job.job import tokenize
    from uvd.config import ActorPoolRun, load_config, parse_model
    from uvd.errors import ConfigError

    try:
        pool = load_config(args.config).run.tokenize if args.config else ActorPoolRun()
        flags = {k: v for k, v in (("num_gpus", args.num_gpus), ("cpus_per_actor", args.cpus_per_actor),
                                   ("min_actors", args.min_actors), ("max_actors", args.max_actors),
                                   ("batch_size", args.batch_size)) if v is not None}
        pool = parse_model(ActorPoolRun, {**pool.model_dump(), **flags}, "flags")
        result = tokenize(args.sentences, args.tokenizer, args.out, use_ray=not args.no_ray, actors=args.actors,
                          batch_size=pool.batch_size, image_batch=pool.batch_size, threads=args.threads, pool=pool)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        print(f"uvd tokenize: {err}", file=sys.stderr)
        return 2
    print(f"tokens:   {result.root}\nmanifest: {result.root}/manifest.json")
    for name, err in result.errors.items():
        print(f"unit {name} failed: {err}", file=sys.stderr)
    return 0 if result.ok else 1
