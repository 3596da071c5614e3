"""`uvd view` on big builds: time to first byte of its pages, local folder and moto S3, 10^3 and 10^4 units.

    python benchmarks/bench_view.py [--sizes 1000,10000] [--backends local,s3] [--items 4] [--repeat 5]

A build of N cheap units (tests/support/tiny_units.py: `--items` 8×8 images per unit, each one
sentence) is made once per size with uvd.runner.build (no Ray) and kept in --work; for S3 the same
folder is put into a moto server on loopback in this process (straight into its backend), a
bucket per size. The viewer is served by uvicorn on loopback in a thread; times are measured with
a plain HTTP client, from sending the request to the first byte of the body:

  start      create_app (manifest.json + units table, templates compiled), before the first request
  first      the server's first request (/static/style.css): the process's one-off warm-up of the
             HTTP stack, paid once and before the page timings
  /          the build page
  deep page  the last page of the dataset (its unit found from the units table, one shard opened)
  sentence   /sentence/<id>?at=<dataset>/<unit> of a sentence in the middle unit (as the grid links it)
  image      one image of that sentence
  id only    /sentence/<id> without ?at= (a shared bare id: searched shard by shard; local only)

"cold" is the first request of a fresh server, "warm" the median of --repeat more. Targets
(issue 27): ≤ 300 ms local, ≤ 1 s on moto, independent of the number of units.
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_build(work: Path, units: int, items: int) -> str:
    out = work / f"build-{units}"
    if (out / "manifest.json").exists():
        return str(out)
    from tests.support.tiny_units import tiny_config
    from uvd.cli.plugins import register_builtin
    from uvd.config import BuildConfig
    from uvd.runner import build

    register_builtin()
    t = time.perf_counter()
    summary = build(BuildConfig.model_validate(tiny_config(str(out), units, items=items)), use_ray=False)
    assert summary.succeeded, summary.report()
    print(f"  built {units} units in {time.perf_counter() - t:.0f} s → {out}", flush=True)
    return str(out)


def upload(local: str, url: str) -> None:
    from tests.support.counting_s3 import seed_moto

    t = time.perf_counter()
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    n = seed_moto(local, bucket, prefix)
    print(f"  put {n} files into moto at {url} in {time.perf_counter() - t:.0f} s", flush=True)


class Served:
    """The app on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def ttfb(self, path: str) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        t = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read(1)
        first = time.perf_counter() - t
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}")
        return first

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def measure(out: str, units: int, backend: str, repeat: int) -> dict[str, Any]:
    from uvd.cli.view.app import create_app
    from uvd.cli.view.data import BuildView

    t = time.perf_counter()
    app = create_app(out, check_outside_plan=False)
    row: dict[str, Any] = {"backend": backend, "units": units, "start": time.perf_counter() - t}
    build: BuildView = app.state.build
    ds = next(iter(build.datasets.values()))
    pages = -(-int(ds.rows.sum()) // build.per_page)
    # a sentence of the middle unit, found here without the server (so the server has not seen it)
    probe = BuildView(out)
    middle = len(ds.units) // 2
    sid = probe._read(probe.datasets[ds.name].shards[middle], 0, 1, ["sentence_id"]).column(0)[0].as_py()
    at = f"{ds.name}/{ds.units[middle]}"
    paths = {"/": "/", "deep page": f"/dataset/{ds.name}?page={pages - 1}",
             "sentence": f"/sentence/{sid}?at={at}", "image": f"/image/{sid}/0?at={at}"}
    served = Served(app)
    try:
        row["first"] = served.ttfb("/static/style.css")
        for name, path in paths.items():
            row[f"{name} cold"] = served.ttfb(path)
            row[f"{name} warm"] = statistics.median(served.ttfb(path) for _ in range(repeat))
        if backend == "local":  # a bare id on a fresh server: the search shard by shard
            fresh = Served(create_app(out, check_outside_plan=False))
            try:
                row["id only cold"] = fresh.ttfb(f"/sentence/{sid}")
            finally:
                fresh.stop()
    finally:
        served.stop()
    return row


def report(rows: list[dict[str, Any]]) -> None:
    cols = ["start", "first", "/ cold", "/ warm", "deep page cold", "deep page warm", "sentence cold", "sentence warm",
            "image cold", "image warm", "id only cold"]
    print("\nbackend  units   " + "  ".join(f"{c:>15}" for c in cols) + "   (ms)")
    for r in rows:
        cells = [f"{1000 * r[c]:15.0f}" if c in r else f"{'-':>15}" for c in cols]
        print(f"{r['backend']:<8} {r['units']:>6}  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--backends", default="local,s3")
    p.add_argument("--items", type=int, default=4, help="sentences per unit")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--work", default="/tmp/uvd-bench-view", help="where the generated builds are kept")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    builds = {n: make_build(work, n, args.items) for n in sizes}
    rows = []
    if "local" in backends:
        rows += [measure(builds[n], n, "local", args.repeat) for n in sizes]
    if "s3" in backends:
        from tests.support.counting_s3 import counting_moto

        import fsspec

        with counting_moto() as _:
            for n in sizes:
                fsspec.filesystem("s3").mkdir(f"view{n}")  # a bucket each: moto scans a whole bucket per LIST
                url = f"s3://view{n}/build"
                upload(builds[n], url)
                rows.append(measure(url, n, "s3", args.repeat))
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
