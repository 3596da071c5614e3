"""Trainer start-up on many token shards (issue #29): time to the first batch and to the end of step 1,
requests, peak RSS per rank; 2 ranks (gloo) × 2 DataLoader workers, local folder and moto S3 on loopback.

Requests (S3) are every request the moto server served from the launch of the ranks to the end
of step 1 (index, first data reads of the DataLoader workers); "footers opened" counts token
shards opened by the ranks while building the index (0 with the index table). "moto busy s" is
the wall time with a request inside moto: moto 5 scans every key of the bucket for each LIST
page, so at 10^5 shards its listing is far slower than S3's; the rest of the start-up is ours.
`--indexed-listing` makes moto answer LIST from a sorted index of its key names (bisect on the
prefix: tests/support/counting_s3.py `indexed_listing`), as S3 does, so the client is what is timed.

The shards are copies of one real token shard (written by the tokenize job's writer) in the real
layout: <root>/tokens/bench-tok/src/part-NNNNNNN.parquet + .stats.json, the tokens manifest, its
units table and the index table (manifest/index.parquet). `--no-index` removes the index table
(the path of outputs written before it: footers read in parallel).

    python benchmarks/bench_train_start.py                       # N = 10^3, 10^4, 10^5; local and s3
    python benchmarks/bench_train_start.py --sizes 1000 --where local
    python benchmarks/bench_train_start.py --sizes 1000 10000 --where s3 --no-index
    python benchmarks/bench_train_start.py --where s3 --indexed-listing
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu_meter import peak_rss_kb  # noqa: E402
from tokenize_job.token_index import IndexingShardWriter, write_index  # noqa: E402
from uvd.layout import UnitLayout, stats_file  # noqa: E402
from uvd.manifest import unit_row, write_manifest  # noqa: E402
from uvd.schema import TOKEN_SCHEMA  # noqa: E402
from uvd.storage import Listed, write_json  # noqa: E402

TOKENIZER = "bench-tok"
SOURCE = "src"


class _Unit:
    def __init__(self, unit: str) -> None:
        self.dataset, self.unit, self.name = SOURCE, unit, f"{SOURCE}/{unit}"


def write_tokens(root: Path, n: int, sentences: int = 8, seed: int = 0) -> Path:
    """N copies of one token shard, with stats files, manifest, units table and index table."""
    tok = root / "tokens" / TOKENIZER
    first = tok / SOURCE / f"part-{0:07d}.parquet"
    rng = np.random.default_rng(seed)
    w = IndexingShardWriter(str(first), TOKEN_SCHEMA, "tokens", {"tokenizer_id": TOKENIZER}, 8 << 20,
                            SOURCE, f"{0:07d}", "")
    for i in range(sentences):
        k = int(rng.integers(1, 5))
        toks = rng.integers(0, 8192, k * 256, dtype=np.uint16)
        w.add({"sentence_id": f"s-{i}", "source": SOURCE, "task": "video", "layout": "sequence",
               "num_images": k, "tokens": toks}, toks.nbytes)
    info = w.close()
    entry = dict(w.entry)
    units, done, entries = [], {}, []
    for i in range(n):
        unit = f"{i:07d}"
        shard = tok / SOURCE / f"part-{unit}.parquet"
        if i:
            try:
                os.link(first, shard)  # same bytes; the trainer cannot tell a link from a copy
            except OSError:
                shutil.copyfile(first, shard)
        st = {"sentences": info.rows, "inputs": info.rows, "ok": info.rows,
              "shard": {"path": f"{SOURCE}/part-{unit}.parquet", "rows": info.rows, "bytes": info.bytes,
                        "sha256": info.sha256}}
        write_json(stats_file(str(shard)), st)
        u = _Unit(unit)
        units.append(u)
        done[u.name] = unit_row(SOURCE, unit, st, {}, Listed(0, "bench"))
        entries.append({**entry, "unit": unit})
    write_manifest(UnitLayout.tokens(str(tok)), {"kind": "tokens", "tokenizer": {"tokenizer_id": TOKENIZER}},
                   units, done)
    write_index(str(tok), entries)
    return tok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, cfg_json: str, launched: float, result: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import pyarrow.parquet as pq
    import torch

    import train.stream as stream
    from train.config import Config
    from train.loop import teardown_distributed, train

    torch.set_num_threads(1)
    marks: dict[str, float] = {}
    footers = [0, False]  # token shards opened while the index is built; counting on?
    real_pf = pq.ParquetFile

    class CountingParquetFile(real_pf):  # type: ignore[misc, valid-type]
        def __init__(self, source: Any, *a: Any, **kw: Any) -> None:
            if footers[1] and "/part-" in str(getattr(source, "path", source)):
                footers[0] += 1
            super().__init__(source, *a, **kw)

    pq.ParquetFile = CountingParquetFile
    real_shared, real_next = stream.shared_index, stream.TokenLoader.__next__

    def shared_index(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        footers[1] = True
        try:
            index = real_shared(*a, **kw)
        finally:
            footers[1] = False
        marks["index_s"] = time.perf_counter() - t
        return index

    def first_next(self: Any) -> Any:
        batch = real_next(self)
        marks.setdefault("first_batch_s", time.time() - launched)
        return batch

    stream.shared_index = shared_index
    stream.TokenLoader.__next__ = first_next
    try:
        train(Config.model_validate(json.loads(cfg_json)), stop_after=1)
        marks["step1_s"] = time.time() - launched
    finally:
        teardown_distributed(True)
    rss_mb = peak_rss_kb() / 1024
    Path(result, f"rank{rank}.json").write_text(json.dumps({**marks, "footers_opened": footers[0], "rss_mb": rss_mb}))


def run_ranks(tokens: str, out: Path, world: int, workers: int) -> list[dict[str, Any]]:
    cfg = {"model": {"size": "tiny", "max_seq_len": 256},
           "data": {"tokens": [tokens], "seq_len": 128, "piece_rows": 8, "num_workers": workers},
           "optim": {"warmup_steps": 1},
           "train": {"out": str(out), "steps": 1, "batch_size": 2, "device": "cpu", "threads": 1, "log_every": 1}}
    result = tempfile.mkdtemp(prefix="bench-start-")
    ctx = multiprocessing.get_context("spawn")
    launched = time.time()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, json.dumps(cfg), launched, result)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(3600)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
    rows = [json.loads(Path(result, f"rank{r}.json").read_text()) for r in range(world)]
    shutil.rmtree(result, ignore_errors=True)
    return rows


def bench(n: int, where: str, index: bool, world: int, workers: int, tmp: Path,
          indexed: bool = False) -> dict[str, Any]:
    local = tmp / f"n{n}"
    if not local.exists():
        write_tokens(local, n)
    tok = local / "tokens" / TOKENIZER
    table = tok / "manifest" / "index.parquet"
    if not index and table.exists():
        table.rename(tok / "manifest" / "index.parquet.off")
    if index and not table.exists():
        (tok / "manifest" / "index.parquet.off").rename(table)
    out = tmp / f"run-{where}-{n}-{index}"
    shutil.rmtree(out, ignore_errors=True)
    if where == "local":
        ranks = run_ranks(str(tok), out, world, workers)
        requests: Any = "-"
        server_s = None
    else:
        from tests.support.counting_s3 import counting_moto, indexed_listing, seed_moto  # moto, counting, on loopback

        with counting_moto() as (_, count), indexed_listing() if indexed else contextlib.nullcontext():
            seed_moto(tok, "uvd", f"bench-{n}/tokens/{TOKENIZER}")
            count.reset()
            ranks = run_ranks(f"s3://uvd/bench-{n}/tokens/{TOKENIZER}", out, world, workers)
            requests, server_s = dict(count.by_method), count.server_s
    label = where + (" (indexed LIST)" if indexed and where != "local" else "")
    return {"where": label, "N": n, "index_table": index, "ranks": ranks, "requests": requests, "server_s": server_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--where", nargs="+", choices=["local", "s3"], default=["local", "s3"])
    p.add_argument("--no-index", action="store_true", help="without manifest/index.parquet (older outputs)")
    p.add_argument("--indexed-listing", action="store_true",
                   help="moto answers LIST from a sorted index of key names, as S3 does (not its scan of every key)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    p.add_argument("--tmp", help="where to write the shards (default: a temp folder, removed at the end)")
    args = p.parse_args(argv)
    tmp = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="bench-train-start-"))
    print("| where | N | index table | first batch s | step 1 s | index s (rank 0) | footers opened for the index (ranks) "
          "| requests | moto busy s | peak RSS MB per rank |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    try:
        for n in args.sizes:
            for where in args.where:
                r = bench(n, where, not args.no_index, args.ranks, args.workers, tmp, args.indexed_listing)
                ranks = r["ranks"]
                req = r["requests"] if isinstance(r["requests"], str) else \
                    f"{sum(r['requests'].values())} ({', '.join(f'{k} {v}' for k, v in sorted(r['requests'].items()))})"
                print(f"| {r['where']} | {n} | {'yes' if r['index_table'] else 'no'} "
                      f"| {max(x['first_batch_s'] for x in ranks):.2f} | {max(x['step1_s'] for x in ranks):.2f} "
                      f"| {ranks[0]['index_s']:.2f} | {sum(x['footers_opened'] for x in ranks)} | {req} "
                      f"| {'-' if r['server_s'] is None else '%.2f' % r['server_s']} "
                      f"| {', '.join('%.0f' % x['rss_mb'] for x in ranks)} |", flush=True)
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
