"""Rerun of a finished LAION build: what a resume costs when there is nothing left to do.

    python benchmarks/bench_rerun.py                          # 10^5 rows, 10^4 units, local folder
    python benchmarks/bench_rerun.py --rows 1000 --per-unit 10   # smoke size

Inputs: `--rows` metadata rows in `--files` Parquet files (URL and hash columns), each URL distinct,
pointing at `--unique` small generated JPEGs on a loopback `demo.image_server.ImageServer` (so the
build finds URL, hash and content duplicates: one row in 50 repeats an earlier hash, one in 50 an
earlier URL). The first build runs on Ray with `--workers` CPUs and is timed from `build()` to its
return. Then, in this process, without Ray (a rerun has nothing to dispatch; Ray's start-up is a
constant that bench_scale.py times on its own):

  rerun       `build()` again on the finished output: plan, committed state, dedup index and
              table checks, manifest. Target (issue 22): ≤ 5 s for 10^5 rows on a local folder.
  old path    what every rerun paid before the dedup index existed: planning plus the build-wide
              URL/hash pass over every metadata row (the same pass, run here into a scratch index).

Printed: first build s, rerun s, old path s and old/rerun. Take figures on a quiet machine.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Quiet:
    def update(self, units: int = 0, items: int = 0, failed: int = 0) -> None:
        pass


def write_inputs(root: Path, rows: int, files: int, unique: int, base_url: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    per_file = -(-rows // files)
    for f in range(files):
        lo, hi = f * per_file, min(rows, (f + 1) * per_file)
        urls = [f"{base_url}/img/{i % unique}.jpg?row={i}" for i in range(lo, hi)]
        hashes = [str(i) for i in range(lo, hi)]
        for j, i in enumerate(range(lo, hi)):
            if i % 50 == 17:
                hashes[j] = str(i - 7)  # a hash repeat of a row that repeats nothing (maybe in another unit)
            elif i % 50 == 33:
                urls[j] = f"{base_url}/img/{(i - 9) % unique}.jpg?row={i - 9}"  # a URL repeat
        path = root / f"meta-{f:03d}.parquet"
        pq.write_table(pa.table({"url": urls, "hash": hashes}), path)
        paths.append(str(path))
    return paths


def config(out: str, metadata: list[str], per_unit: int) -> "object":
    from uvd.config import BuildConfig

    return BuildConfig.model_validate({
        "out": out, "seed": 0,
        "datasets": [{"name": "web", "source": "laion", "builder": "single", "items_per_unit": per_unit,
                      "source_args": {"metadata": metadata, "download": {"allow_loopback": True, "retries": 1}}}]})


def old_path_s(cfg: "object", scratch: str) -> float:
    """Plan + the build-wide URL/hash pass over every row, as each rerun ran it before the index."""
    from sources.laion_dedup import prepare_duplicates
    from uvd.plan import plan_units
    from uvd.unit import make_source

    t = time.perf_counter()
    planned = plan_units(cfg)
    ds = cfg.datasets[0]
    source = make_source(cfg, ds)
    prepare_duplicates(source.options, scratch, planned, [])
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--per-unit", type=int, default=10)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--unique", type=int, default=2000, help="distinct images served")
    ap.add_argument("--workers", type=int, default=0, help="Ray CPUs for the first build (0: all)")
    ap.add_argument("--keep", help="build here and keep it (default: a temporary folder); a finished build "
                                   "already there is reused: only the reruns are timed")
    args = ap.parse_args(argv)

    from demo.image_server import ImageServer, generated_photos
    from uvd.cli.plugins import register_builtin
    from uvd.runner import build, stop_ray

    register_builtin()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-rerun-"))
    root.mkdir(parents=True, exist_ok=True)
    photos = generated_photos(args.unique, seed=3, sizes=(48, 96), quality=80)
    try:
        reuse = bool(args.keep) and (root / "out" / "manifest.json").is_file()
        if reuse:  # a finished build kept by an earlier run: time the rerun only (a quiet-machine figure)
            metadata = sorted(str(p) for p in root.glob("meta-*.parquet"))
            cfg = config(str(root / "out"), metadata, args.per_unit)
            first, first_s = build(cfg, use_ray=False, progress=Quiet()), float("nan")
        else:
            with ImageServer({f"{i}.jpg": p for i, p in enumerate(photos)}) as server:
                metadata = write_inputs(root, args.rows, args.files, args.unique, server.base.rstrip("/"))
                cfg = config(str(root / "out"), metadata, args.per_unit)
                t = time.perf_counter()
                first = build(cfg, workers=args.workers, use_ray=True, progress=Quiet())
                first_s = time.perf_counter() - t
                stop_ray()
        t = time.perf_counter()
        again = build(cfg, use_ray=False, progress=Quiet())
        rerun_s = time.perf_counter() - t
        shutil.rmtree(root / "scratch-index", ignore_errors=True)  # the old path always started from nothing
        old_s = old_path_s(cfg, str(root / "scratch-index"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"rows {args.rows}  units {first.units}  first build: {first.built} built, {first.ok} ok, "
          f"{first.failures.get('duplicate', 0)} duplicates, {first_s:.1f} s")
    print(f"rerun: {again.built} built, {again.skipped} skipped, {rerun_s:.2f} s (target ≤ 5 s at 10^5 rows)")
    print(f"old path (plan + URL/hash pass over every row): {old_s:.2f} s   old / rerun: {old_s / rerun_s:.1f}×")
    return 0 if again.built == 0 and first.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
