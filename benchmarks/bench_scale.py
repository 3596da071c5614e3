"""The control plane at scale: plan, first build, rerun of 10^3…10^5 tiny units, local folder and moto S3.

    python benchmarks/bench_scale.py [--sizes 1000,10000,100000] [--backends local,s3] [--workers 2] [--inline]

Each unit is one item of `tests/support/tiny_units.py` that fails at read (`--work` makes it an 8×8
image instead), so a unit costs only its control plane: task dispatch, source/builder, the three
writes (data shard, audit, stats). S3 is a moto server on loopback in this process, counting the
requests it serves. Each phase runs in a child process (its VmHWM is the driver's peak RSS), printing:
plan s, first build s, rerun s, driver peak RSS (KB per unit), manifest.json and units.parquet
bytes, requests per unit (first build) and on rerun, worker seconds per unit (time inside a unit,
from the stats) and per-unit wall × workers, machine-wide busy CPU-s (/proc/stat), and the growth
factor of each time per 10× units. Targets (issue 13): rerun of 10^5 ≤ 60 s on S3, ≤ 20 s local;
rerun requests ≤ units/100 + a few per dataset; ≤ 2 KB RSS per unit; manifest.json ≤ 64 KB;
time ≤ 11× per 10× units; ≤ 30 ms worker time per trivial unit.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from cpu_meter import busy_cpu_s, peak_rss_kb  # noqa: E402


def phase(args: argparse.Namespace) -> dict:
    """One phase in this (child) process: plan + build, reporting times and this driver's peak RSS."""
    from tests.support.tiny_units import tiny_config
    from uvd.cli.plugins import register_builtin
    from uvd.config import BuildConfig
    from uvd.plan import plan_units
    from uvd.runner import build

    register_builtin()  # `single` by name, as the CLI registers it
    cfg = BuildConfig.model_validate(tiny_config(args.out, args.units, fail=not args.work,
                                                 max_in_flight=4 * max(args.workers, 1)))
    t = time.perf_counter()
    plan_units(cfg)
    plan_s = time.perf_counter() - t
    ray_start = 0.0
    if not args.inline:  # Ray's start-up is a constant, not a cost of the units: timed on its own
        from uvd.runner import init_ray

        t = time.perf_counter()
        init_ray(args.workers)
        ray_start = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    summary = build(cfg, workers=args.workers, use_ray=not args.inline)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    inside = [summary.unit_stats(name)["seconds"]["total"] for name in summary.stats]
    return {"plan_s": plan_s, "ray_start_s": ray_start, "build_s": wall, "built": summary.built, "skipped": summary.skipped,
            "failed_units": len(summary.failed_units),
            "unit_s": sum(inside) / len(inside) if inside else 0.0,
            "peak_rss_kb": peak_rss_kb(),
            "driver_cpu_s": cpu}


def run_phase(out: str, units: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--phase", "--out", out, "--units", str(units), "--workers", str(args.workers)]
    cmd += ["--inline"] * args.inline + ["--work"] * args.work
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"phase failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(backend: str, units: int, args: argparse.Namespace, count=None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if backend == "local":
        tmp = tempfile.mkdtemp(prefix="bench_scale-")
        out = f"{tmp}/out"
    else:  # a bucket of its own: moto scans every key of a bucket for each LIST page
        bucket = f"uvd-scale-{units}-{time.time_ns()}"
        import fsspec

        fsspec.filesystem("s3").mkdir(bucket)
        out = f"s3://{bucket}/out"
    from uvd import storage

    result = {"backend": backend, "units": units}
    for name in ("first", "rerun"):
        if count is not None:
            count.reset()
        cpu0, own0 = busy_cpu_s(), time.process_time()
        r = run_phase(out, units, args, env)
        r["busy_cpu_s"] = busy_cpu_s() - cpu0
        r["server_cpu_s"] = time.process_time() - own0  # this process: the moto server's threads (S3)
        if count is not None:
            r["requests"] = count.total
        result[name] = r
    fs, path = storage.fs_and_path(out)
    result["manifest_bytes"] = fs.size(f"{path}/manifest.json")
    result["units_table_bytes"] = fs.size(f"{path}/manifest/units.parquet")
    if backend == "local":
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def report(rows: list[dict], workers: int) -> None:
    print(f"{'backend':7} {'units':>7} {'plan s':>7} {'build s':>8} {'rerun s':>8} {'RSS MB b/r':>10} "
          f"{'manifest B':>10} {'table B':>9} {'req/unit':>8} {'rerun req':>9} {'unit ms':>8} {'wall×w ms':>9} "
          f"{'busy CPU-s':>10}")
    for r in rows:
        f, again = r["first"], r["rerun"]
        per_unit = 1000 * f["build_s"] * max(workers, 1) / r["units"]
        req = f"{f['requests'] / r['units']:.2f}" if "requests" in f else "-"
        rss = f"{f['peak_rss_kb'] / 1024:.0f}/{again['peak_rss_kb'] / 1024:.0f}"
        print(f"{r['backend']:7} {r['units']:>7} {f['plan_s']:>7.2f} {f['build_s']:>8.1f} {again['build_s']:>8.2f} "
              f"{rss:>10} {r['manifest_bytes']:>10} "
              f"{r['units_table_bytes']:>9} {req:>8} {again.get('requests', '-'):>9} {1000 * f['unit_s']:>8.2f} "
              f"{per_unit:>9.2f} {f['busy_cpu_s']:>10.1f}")
        assert again["built"] == 0 and again["skipped"] == r["units"], again
        assert f["built"] == r["units"] and not f["failed_units"], f
    for backend in sorted({r["backend"] for r in rows}):
        mine = [r for r in rows if r["backend"] == backend]
        for a, b in zip(mine, mine[1:]):
            k = b["units"] / a["units"]
            g = {name: (b["first" if name != "rerun" else "rerun"]["build_s"] if name != "plan" else b["first"]["plan_s"])
                 / max((a["first" if name != "rerun" else "rerun"]["build_s"] if name != "plan" else a["first"]["plan_s"]), 1e-9)
                 for name in ("plan", "first", "rerun")}
            added = {ph: (b[ph]["peak_rss_kb"] - a[ph]["peak_rss_kb"]) / (b["units"] - a["units"])
                     for ph in ("first", "rerun")}
            print(f"growth {backend} {a['units']}→{b['units']} (×{k:g}): plan ×{g['plan']:.1f}, "
                  f"first build ×{g['first']:.1f}, rerun ×{g['rerun']:.1f}; driver peak RSS per added unit "
                  f"{added['first']:.2f} KB (build), {added['rerun']:.2f} KB (rerun)")
    print("rerun CPU-s: " + "; ".join(
        f"{r['backend']} {r['units']}: driver {r['rerun']['driver_cpu_s']:.1f}"
        + (f", moto server {r['rerun']['server_cpu_s']:.1f}" if r["backend"] == "s3" else "") for r in rows))
    print("(build s excludes Ray's start-up, "
          + ", ".join(f"{r['first']['ray_start_s']:.1f}" for r in rows) + " s; wall×w ms: build s × workers / units)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--backends", default="local,s3")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--inline", action="store_true", help="build in the driver process, no Ray")
    p.add_argument("--work", action="store_true", help="units make one tiny sentence instead of failing fast")
    p.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--units", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for backend in args.backends.split(","):
        if backend == "s3":
            from tests.support.counting_s3 import counting_moto

            with counting_moto() as (_, count):
                rows += [measure("s3", n, args, count) for n in sizes]
        else:
            rows += [measure("local", n, args) for n in sizes]
    print(f"# bench_scale: workers {args.workers}, {'inline' if args.inline else 'Ray'}, "
          f"{'tiny sentence' if args.work else 'fail-fast'} units")
    report(rows, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
