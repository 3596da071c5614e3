"""A build's driver on a 3-node local Ray cluster beside one node: driver RSS, object-store peak, per-unit overhead.

    python benchmarks/bench_cluster.py [--units 10000] [--items 1]

The cluster is `ray.cluster_utils.Cluster` on this machine (tests/support/cluster.py): a head with
no CPUs and two 1-CPU worker nodes; "one node" is a local Ray with 2 CPUs. Each unit is one tiny
item of tests/support/tiny_units.py (an 8×8 image), written to a local folder (the nodes share this
disk: `--shared-fs`). Each build runs in a child process that joins the cluster (RAY_ADDRESS) or
starts its local Ray, and prints: wall seconds of the build (Ray's start excluded), the driver's
peak RSS (VmHWM) and per unit, the object store's peak use (Plasma, sampled every 0.5 s) and the
per-unit scheduling overhead: wall × CPUs / units − the mean time a unit spends inside its task
(from a sample of its stats files), i.e. what dispatch, retries bookkeeping and result handling
cost per unit beyond the work itself.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from cpu_meter import peak_rss_kb  # noqa: E402


def _plasma_mib() -> float:
    from ray._private.internal_api import memory_summary

    m = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(stats_only=True))
    return float(m.group(1)) if m else 0.0


def child(args: argparse.Namespace) -> None:
    """One build in this process; prints one JSON line."""
    from tests.support.tiny_units import tiny_config
    from uvd.cli.plugins import register_builtin
    from uvd.config import BuildConfig
    from uvd.runner import build, init_ray

    register_builtin()
    cfg = BuildConfig.model_validate(tiny_config(args.out, args.units, items=args.items))
    init_ray(2)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], _plasma_mib())
            except Exception:  # noqa: BLE001 - a missed sample only lowers the peak
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    summary = build(cfg, progress=_Quiet(), shared_fs=True)
    wall = time.perf_counter() - t
    stop.set()
    sampler.join()
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    hwm_kb = peak_rss_kb()
    print(json.dumps({"built": len(summary.stats), "failed": len(summary.failed_units), "wall_s": wall,
                      "cpus": cpus, "nodes": nodes, "driver_hwm_kb": hwm_kb, "plasma_peak_mib": peak[0]}))


class _Quiet:
    def update(self, **_: object) -> None:
        pass


def unit_seconds(out: str, sample: int = 200) -> float:
    files = sorted(Path(out).glob("sentences/*/part-*.stats.json"))
    picked = random.Random(0).sample(files, min(sample, len(files)))
    return sum(json.loads(p.read_text())["seconds"]["total"] for p in picked) / max(len(picked), 1)


def run_build(units: int, items: int, out: str, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", "--units", str(units), "--items", str(items),
                        "--out", out], env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["unit_s"] = unit_seconds(out)
    res["overhead_ms"] = 1000 * (res["wall_s"] * res["cpus"] / units - res["unit_s"])
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--units", type=int, default=10000)
    p.add_argument("--items", type=int, default=1)
    p.add_argument("--child", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    from tests.support.cluster import cluster_env, local_cluster

    base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    base.pop("RAY_ADDRESS", None)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        rows["one node (local Ray, 2 CPUs)"] = run_build(args.units, args.items, f"{tmp}/one", base)
        with local_cluster() as (cluster, _):
            rows["3 nodes (head 0 CPU + 2 × 1 CPU)"] = run_build(args.units, args.items, f"{tmp}/three",
                                                                 cluster_env(cluster, base))
    print(f"{args.units} units × {args.items} tiny item(s), output on a local folder")
    print(f"{'':36} {'nodes':>5} {'built':>6} {'wall s':>7} {'driver RSS MiB':>14} {'KB/unit':>7} "
          f"{'plasma peak MiB':>15} {'unit ms':>7} {'overhead ms/unit':>16}")
    for name, r in rows.items():
        print(f"{name:36} {r['nodes']:>5} {r['built']:>6} {r['wall_s']:>7.1f} {r['driver_hwm_kb'] / 1024:>14.0f} "
              f"{r['driver_hwm_kb'] / args.units:>7.2f} {r['plasma_peak_mib']:>15.0f} {1000 * r['unit_s']:>7.1f} "
              f"{r['overhead_ms']:>16.1f}")


if __name__ == "__main__":
    main()
