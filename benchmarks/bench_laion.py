"""UVD's `laion` source + `single` builder against img2dataset on the same loopback-served JPEGs.

    python benchmarks/bench_laion.py                 # 300 JPEGs of 320–1280 px, 1 process each
    python benchmarks/bench_laion.py --n 2000 --processes 2

Both download the same N images from one HTTP server (its own process, so it takes no CPU
time from either side's interpreter), centre-crop them to 256×256 and store them as JPEG
(quality 95): UVD as sentence shards, img2dataset (`--resize_mode center_crop
--image_size 256`, webdataset output) from its own venv, `.venv-bench` (`python -m venv
.venv-bench && .venv-bench/bin/pip install img2dataset==1.47.0`). Each side runs in a fresh
subprocess and times itself after its imports, with the same number of processes and of
download threads per process. Prints images/s of each and the ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"

IMG2DATASET_RUN = r"""
import glob, json, sys, time, warnings
warnings.filterwarnings("ignore")
from img2dataset import download
a = json.loads(sys.argv[1])
t = time.perf_counter()
download(url_list=a["urls"], input_format="txt", output_folder=a["out"], output_format="webdataset",
         resize_mode="center_crop", image_size=256, encode_quality=95, processes_count=a["processes"],
         thread_count=a["threads"], number_sample_per_shard=a["per_process"], timeout=10, retries=0,
         distributor="multiprocessing", enable_wandb=False, compute_hash=None)
seconds = time.perf_counter() - t
ok = sum(json.load(open(p))["successes"] for p in glob.glob(a["out"] + "/*_stats.json"))
print("RESULT " + json.dumps({"seconds": seconds, "ok": ok}))
"""


def _serve(folder: str, queue: mp.Queue) -> None:
    from demo.image_server import ImageServer

    images = {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.jpg"))}
    server = ImageServer(images)
    queue.put(server.base)
    server.thread.join()


def _unit(args: tuple) -> dict:
    from uvd.unit import run_unit

    cfg, unit, payload = args
    return run_unit(cfg, "laion", unit, payload, cfg.out)


def run_uvd(a: dict) -> dict:
    """In the UVD subprocess: plan, then run the units (one per process), timed after imports."""
    from uvd.config import BuildConfig
    from uvd.layout import unit_name
    from uvd.cli.plugins import register_builtin
    from uvd.unit import make_source

    register_builtin()
    cfg = BuildConfig.model_validate({"out": a["out"], "datasets": [{
        "name": "laion", "source": "laion", "builder": "single", "items_per_unit": a["per_process"],
        "source_args": {"metadata": a["metadata"],
                        "download": {"allow_loopback": True, "concurrency": a["threads"], "per_host": a["threads"],
                                     "retries": 0}}}]})
    t = time.perf_counter()
    payloads = make_source(cfg, cfg.datasets[0]).plan(a["per_process"])
    jobs = [(cfg, unit_name(i), p) for i, p in enumerate(payloads)]
    if a["processes"] == 1:
        stats = [_unit(j) for j in jobs]
    else:
        with mp.get_context("fork").Pool(a["processes"]) as pool:
            stats = pool.map(_unit, jobs)
    return {"seconds": time.perf_counter() - t, "ok": sum(s["ok"] for s in stats)}


def _result(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{cmd[0]} failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="number of JPEGs (default 300; 2000 for the long run)")
    p.add_argument("--processes", type=int, default=1, help="processes on each side (default 1)")
    p.add_argument("--threads", type=int, default=32, help="download threads per process on each side")
    p.add_argument("--repeat", type=int, default=2, help="runs of each side, alternated; the best counts")
    p.add_argument("--_uvd", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._uvd:
        print("RESULT " + json.dumps(run_uvd(json.loads(args._uvd))))
        return 0
    if not BENCH_PY.exists():
        print(f"img2dataset venv not found at {BENCH_PY}: see this file's docstring", file=sys.stderr)
        return 2

    from demo.image_server import generated_photos

    with tempfile.TemporaryDirectory(prefix="bench_laion_") as tmp:
        work = Path(tmp)
        (work / "images").mkdir()
        t = time.perf_counter()
        for i, data in enumerate(generated_photos(args.n, seed=0, sizes=(320, 1280))):
            (work / "images" / f"{i:06d}.jpg").write_bytes(data)
        size = sum(f.stat().st_size for f in (work / "images").iterdir())
        print(f"{args.n} JPEGs, 320–1280 px, {size / 1e6:.1f} MB, generated in {time.perf_counter() - t:.1f}s")

        ctx = mp.get_context("spawn")
        queue: mp.Queue = ctx.Queue()
        server = ctx.Process(target=_serve, args=(str(work / "images"), queue), daemon=True)
        server.start()
        try:
            base = queue.get(timeout=120)
            urls = [f"{base}/img/{i:06d}.jpg" for i in range(args.n)]
            (work / "urls.txt").write_text("\n".join(urls) + "\n")
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"URL": urls, "TEXT": ["caption"] * args.n}), work / "urls.parquet")
            per_process = math.ceil(args.n / args.processes)
            common = {"processes": args.processes, "threads": args.threads, "per_process": per_process}
            runs: dict[str, list[dict]] = {"i2d": [], "uvd": []}
            for r in range(args.repeat):  # alternated, best of each: the machine's load drifts
                runs["i2d"].append(_result([str(BENCH_PY), "-c", IMG2DATASET_RUN, json.dumps(
                    {**common, "urls": str(work / "urls.txt"), "out": str(work / f"i2d{r}")})]))
                runs["uvd"].append(_result([sys.executable, __file__, "--_uvd", json.dumps(
                    {**common, "metadata": str(work / "urls.parquet"), "out": str(work / f"uvd{r}")})]))
            i2d, uvd = (min(runs[k], key=lambda x: x["seconds"]) for k in ("i2d", "uvd"))
        finally:
            server.terminate()

    rows = [("uvd laion+single", uvd), ("img2dataset", i2d)]
    print(f"\nprocesses {args.processes}, threads/process {args.threads}, resize center_crop 256, JPEG q95, "
          f"best of {args.repeat}")
    for k, name in (("uvd", "uvd"), ("i2d", "img2dataset")):
        print(f"  {name} runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in runs[k]))
    print(f"{'':18} {'ok':>6} {'seconds':>8} {'images/s':>9}")
    for name, r in rows:
        print(f"{name:18} {r['ok']:>6} {r['seconds']:>8.2f} {r['ok'] / r['seconds']:>9.1f}")
    ratio = (uvd["ok"] / uvd["seconds"]) / (i2d["ok"] / i2d["seconds"])
    print(f"\nratio uvd / img2dataset: {ratio:.2f}x")
    return 0 if all(r["ok"] == args.n for k in runs for r in runs[k]) else 1


if __name__ == "__main__":
    sys.exit(main())
