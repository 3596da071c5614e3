"""The LAION ingest path as a user runs it: `uvd build` (CLI, Ray, all cores) against img2dataset.

    python benchmarks/bench_laion.py                      # 6000 JPEGs, img2dataset threads tuned
    python benchmarks/bench_laion.py --images 6000 --repeat 2 --no-ray

Inputs: `--images` unique JPEGs of 320–1280 px cut from the project's real photos
(benchmarks/photo_corpus.py, cached under .bench-cache/), served by nginx (Debian
`nginx-light`, installed with apt-get when missing) in its own processes on 127.0.0.1. Both
sides download every image, centre-crop it to 256×256, store it as JPEG q95 in Parquet:

  uvd          `uvd build CONFIG` in a fresh process: local Ray on all cores, the laion source's
               defaults (allow_loopback: the nginx endpoint only), 256 items per unit.
  img2dataset  1.47.0 from its own venv, `.venv-bench` (`python -m venv .venv-bench &&
               .venv-bench/bin/pip install img2dataset==1.47.0`), output_format parquet,
               processes = cores, thread count tuned first on a part of the set (`--i2d-threads
               16,32,64`; the best wall time is kept), hashes off, retries 0.

Each run is timed from its process start (interpreter, imports, Ray start-up included) to its
exit; start-up (until the first unit starts for uvd, until `download()` is called for
img2dataset) is also reported on its own. CPU is machine-wide busy CPU-seconds from
/proc/stat, so Ray's daemons, nginx and every helper process count. The ratios printed are
uvd over img2dataset in wall time and in images per busy CPU-second. On a shared machine the
other tenants' load lands in that column too: take final figures on a quiet machine. The
"tree CPU-s" column (each side's own process tree, polled from /proc: Ray's daemons and
workers included, nginx not) is the cross-check that holds up on a noisy machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_meter import Span, load_average, run_measured  # noqa: E402
from nginx_server import Nginx  # noqa: E402
from photo_corpus import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"

IMG2DATASET_RUN = r"""
import glob, json, sys, time, warnings
warnings.filterwarnings("ignore")
from img2dataset import download
a = json.loads(sys.argv[1])
print("STARTED " + repr(time.time()), flush=True)
download(url_list=a["urls"], input_format="txt", output_folder=a["out"], output_format="parquet",
         resize_mode="center_crop", image_size=256, encode_format="jpg", encode_quality=95,
         processes_count=a["processes"], thread_count=a["threads"], number_sample_per_shard=a["per_shard"],
         timeout=10, retries=0, distributor="multiprocessing", enable_wandb=False, compute_hash=None)
ok = sum(json.load(open(p))["successes"] for p in glob.glob(a["out"] + "/*_stats.json"))
print("RESULT " + json.dumps({"ok": ok}))
"""


def run_img2dataset(urls: Path, out: Path, processes: int, threads: int, n: int) -> dict:
    per_shard = math.ceil(n / (4 * processes))  # 4 shards per process: balanced, few start-ups
    args = json.dumps({"urls": str(urls), "out": str(out), "processes": processes, "threads": threads,
                       "per_shard": per_shard})
    t0 = time.time()
    proc, span = run_measured([str(BENCH_PY), "-c", IMG2DATASET_RUN, args], cwd=ROOT)
    lines = proc.stdout.splitlines()
    started = next((float(x.split()[1]) for x in lines if x.startswith("STARTED ")), None)
    result = next((json.loads(x[7:]) for x in lines if x.startswith("RESULT ")), None)
    if proc.returncode or result is None or started is None:
        raise RuntimeError(f"img2dataset failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return {"name": f"img2dataset 1.47, {processes} proc × {threads} threads", "ok": result["ok"],
            "span": span, "startup": started - t0}


def uvd_config(metadata: Path, out: Path, workers: int, extra_download: dict) -> dict:
    return {"out": str(out), "run": {"workers": workers}, "datasets": [{
        "name": "laion", "source": "laion", "builder": "single",
        "source_args": {"metadata": str(metadata), "download": dict(extra_download)}}]}


def run_uvd(metadata: Path, out: Path, workers: int, no_ray: bool, extra_download: dict) -> dict:
    cfg = out.parent / f"{out.name}.json"  # JSON is YAML
    cfg.write_text(json.dumps(uvd_config(metadata, out, workers, extra_download)))
    cmd = [sys.executable, "-m", "uvd", "build", str(cfg)] + (["--no-ray"] if no_ray else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    proc, span = run_measured(cmd, cwd=ROOT, env=env)
    if proc.returncode:
        raise RuntimeError(f"uvd build failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    marks = sorted((out / "sentences" / "laion").glob("*.stats.json"))
    stats = [json.loads(f.read_text()) for f in marks]
    # A unit started at its stats file's time minus its own duration: the earliest ends the start-up.
    first = min(f.stat().st_mtime - s["seconds"]["total"] for f, s in zip(marks, stats))
    name = "uvd build --no-ray (one process)" if no_ray else f"uvd build (Ray, {workers or os.cpu_count()} workers)"
    return {"name": name, "ok": sum(s["ok"] for s in stats), "span": span, "startup": first - t0}


def tune_threads(urls: Path, work: Path, processes: int, candidates: list[int], n: int) -> tuple[int, list[str]]:
    if len(candidates) == 1:
        return candidates[0], []
    part = work / "urls-tune.txt"
    lines = urls.read_text().splitlines()[:n]
    part.write_text("\n".join(lines) + "\n")
    notes, best = [], None
    for t in candidates:
        r = run_img2dataset(part, work / f"tune-{t}", processes, t, len(lines))
        notes.append(f"  img2dataset {processes} × {t:>3} threads on {len(lines)} images: "
                     f"{r['span'].wall_s:6.2f} s wall, {r['span'].busy_cpu_s:6.1f} busy CPU-s, "
                     f"{r['span'].tree_cpu_s:6.1f} CPU-s in its process tree")
        if best is None or r["span"].wall_s < best[1]:
            best = (t, r["span"].wall_s)
    return best[0], notes


def row(r: dict) -> str:
    s: Span = r["span"]
    return (f"| {r['name']} | {r['ok']} | {s.wall_s:.1f} | {r['startup']:.1f} | {s.busy_cpu_s:.1f} | "
            f"{r['ok'] / s.wall_s:.0f} | {s.per_busy(r['ok']):.0f} | {s.tree_cpu_s:.1f} | {r['ok'] / s.tree_cpu_s:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=6000, help="unique JPEGs to download (default 6000)")
    p.add_argument("--workers", type=int, default=0, help="Ray workers for uvd (default 0 = all cores)")
    p.add_argument("--processes", type=int, default=os.cpu_count(), help="img2dataset processes (default: cores)")
    p.add_argument("--i2d-threads", default="16,32,64",
                   help="img2dataset thread counts to try (comma-separated); one value skips the tuning")
    p.add_argument("--tune-images", type=int, default=2000, help="images used to tune img2dataset's threads")
    p.add_argument("--repeat", type=int, default=1, help="runs of each side, alternated; the best wall counts")
    p.add_argument("--no-ray", action="store_true", help="also run `uvd build --no-ray` (one process)")
    p.add_argument("--download", default="{}", help="extra laion download options for uvd, as JSON")
    args = p.parse_args(argv)
    if not BENCH_PY.exists():
        print(f"img2dataset venv not found at {BENCH_PY}: see this file's docstring", file=sys.stderr)
        return 2
    extra = json.loads(args.download)

    t = time.perf_counter()
    folder = corpus(args.images)
    files = sorted(folder.glob("*.jpg"))
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} unique JPEGs from real photos, 320–1280 px, {size / 1e6:.0f} MB "
          f"(ready in {time.perf_counter() - t:.1f} s, cached in {folder})")
    with tempfile.TemporaryDirectory(prefix="bench_laion_") as tmp, Nginx(folder, Path(tmp) / "nginx") as base:
        work = Path(tmp)
        extra = {"allow_loopback": [base.split("//", 1)[1]], **extra}  # nginx's host:port, no other local port
        urls = [f"{base}/img/{f.name}" for f in files]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        pq.write_table(pa.table({"URL": urls, "TEXT": ["caption"] * len(urls)}), work / "urls.parquet")
        threads, notes = tune_threads(work / "urls.txt", work, args.processes,
                                      [int(v) for v in args.i2d_threads.split(",")], args.tune_images)
        print("\n".join(notes + [f"img2dataset threads per process: {threads}"]))
        runs: dict[str, list[dict]] = {"uvd": [], "i2d": [], "noray": []}
        for r in range(args.repeat):  # alternated: the machine's load drifts
            runs["i2d"].append(run_img2dataset(work / "urls.txt", work / f"i2d{r}", args.processes, threads,
                                               len(urls)))
            runs["uvd"].append(run_uvd(work / "urls.parquet", work / f"uvd{r}", args.workers, False, extra))
            if args.no_ray:
                runs["noray"].append(run_uvd(work / "urls.parquet", work / f"noray{r}", args.workers, True, extra))
            print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]['span'].wall_s:.1f} s" for k, v in runs.items() if v),
                  flush=True)

    best = {k: min(v, key=lambda x: x["span"].wall_s) for k, v in runs.items() if v}
    print(f"\n{len(urls)} images, 256×256 center crop, JPEG q95, Parquet; {os.cpu_count()} cores; "
          f"best of {args.repeat}; load average now {load_average():.1f}")
    print("| run | ok | wall s | of which start-up s | machine busy CPU-s | images/s | images / busy CPU-s "
          "| tree CPU-s | images / tree CPU-s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ("uvd", "noray", "i2d"):
        if k in best:
            print(row(best[k]))
    u, i = best["uvd"], best["i2d"]
    for k in ("uvd", "i2d"):
        if best[k]["span"].by_kind:
            print(f"{best[k]['name']}: tree CPU-s by process: "
                  + ", ".join(f"{n} {v:.1f}" for n, v in best[k]["span"].by_kind.items()))
    print(f"\nratio uvd / img2dataset: wall {i['span'].wall_s / u['span'].wall_s:.2f}×, "
          f"images per busy CPU-s {u['span'].per_busy(u['ok']) / i['span'].per_busy(i['ok']):.2f}× "
          f"(per process-tree CPU-s {(u['ok'] / u['span'].tree_cpu_s) / (i['ok'] / i['span'].tree_cpu_s):.2f}×)")
    return 0 if all(r["ok"] == len(urls) for v in runs.values() for r in v) else 1


if __name__ == "__main__":
    sys.exit(main())
