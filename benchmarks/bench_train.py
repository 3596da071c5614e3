"""Training benchmarks, side by side in one run.

1. Loader: token shards → rows of seq_len + 1 (EOS appended, packed), tokens/s on one core,
   ours (train.stream: Arrow buffers, numpy slices) vs a naive pure-Python packer (to_pylist,
   list.extend, row slicing) over the same shards; prints the ratio.
2. Trainer: tokens/s and MFU of the tiny config on this CPU (MFU against a measured fp32
   matmul peak: no GPU is lent to this task).

    python benchmarks/bench_train.py                 # small default sizes (shared machine)
    python benchmarks/bench_train.py --sentences 20000 --rows 4000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from train.config import Config, DataConfig
from train.shards_index import build_index
from uvd.shards import open_parquet
from train.stream import make_packer
from uvd.layout import stats_file
from uvd.schema import TOKEN_SCHEMA
from uvd.shards import ShardWriter
from uvd.storage import write_json

EOS = 8193


def write_shards(root: Path, sentences: int, shards: int, seed: int = 0) -> int:
    """Token shards with 1–16 images per sentence (as UVDv1's layouts); returns the token count."""
    rng = np.random.default_rng(seed)
    total = 0
    per = sentences // shards
    for s in range(shards):
        url = str(root / "tokens" / "bench" / "src" / f"part-{s:05d}.parquet")
        w = ShardWriter(url, TOKEN_SCHEMA, "tokens", {"tokenizer": "bench"}, row_group_bytes=8 << 20)
        for i in range(per):
            n = int(rng.integers(1, 17))
            toks = rng.integers(0, 8192, n * 256, dtype=np.uint16)
            total += toks.size
            w.add({"sentence_id": f"{s}-{i}", "source": "src", "task": "video", "layout": "sequence",
                   "num_images": n, "tokens": toks}, toks.nbytes)
        info = w.close()
        write_json(stats_file(url), {"shard": {"path": url, "rows": info.rows}})
    return total


def bench_ours(root: Path, rows: int, seq_len: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second), index building included."""
    t, c = time.perf_counter(), time.process_time()
    cfg = DataConfig(tokens=[str(root)], seq_len=seq_len)
    index = build_index(cfg.tokens, None, cfg.piece_rows)
    packer = make_packer(index, cfg, seed=0, consumer=0, consumers=1)
    batch = np.empty((rows, seq_len + 1), np.int32)
    for r in batch:
        packer.next_row(r)
    return rows * seq_len / (time.perf_counter() - t), rows * seq_len / (time.process_time() - c)


def bench_naive(root: Path, rows: int, seq_len: int) -> tuple[float, float]:
    """What one writes first: rows as Python lists, sentence after sentence, shard after shard."""
    shards = sorted((root / "tokens" / "bench" / "src").glob("part-*.parquet"))
    t, c = time.perf_counter(), time.process_time()
    out: list[list[int]] = []
    buf: list[int] = []
    done = False
    while not done:
        for shard in shards:
            with open_parquet(str(shard)) as pf:
                for rg in range(pf.num_row_groups):
                    for tokens in pf.read_row_group(rg, columns=["tokens"], use_threads=False).column("tokens").to_pylist():
                        buf.extend(tokens)
                        buf.append(EOS)
                        while len(buf) >= seq_len + 1:
                            out.append(buf[:seq_len + 1])
                            buf = buf[seq_len:]
                        if len(out) >= rows:
                            done = True
                            break
                    if done:
                        break
            if done:
                break
    np.asarray(out[:rows], np.int32)  # the trainer needs an array in the end
    return rows * seq_len / (time.perf_counter() - t), rows * seq_len / (time.process_time() - c)


def bench_trainer(root: Path, steps: int) -> tuple[float, float, int]:
    from train.loop import train

    with tempfile.TemporaryDirectory() as out:
        cfg = Config.model_validate({"model": {"size": "tiny", "max_seq_len": 1024},
                                     "data": {"tokens": [str(root)], "seq_len": 1024},
                                     "optim": {"warmup_steps": 2},
                                     "train": {"out": out, "steps": steps, "batch_size": 4, "log_every": 1000,
                                               "ckpt_every": 10 ** 6, "threads": 1}})
        records = train(cfg)[1:]  # the first step pays for allocation
    tps = float(np.median([r["tokens_per_s"] for r in records]))
    mfu = float(np.median([r["mfu"] for r in records]))
    return tps, mfu, 4 * 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=4000)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--rows", type=int, default=2000, help="rows of seq_len + 1 to pack")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        total = write_shards(root, args.sentences, args.shards)
        rows = min(args.rows, total // (args.seq_len + 1))
        print(f"token set: {args.sentences} sentences of 1–16 images, {total / 1e6:.1f}M tokens, {args.shards} shards")
        runs: dict[str, list[tuple[float, float]]] = {"naive": [], "ours": []}
        for _ in range(args.repeats):  # interleaved, best of: the machine is shared
            runs["naive"].append(bench_naive(root, rows, args.seq_len))
            runs["ours"].append(bench_ours(root, rows, args.seq_len))
        naive = [max(r[i] for r in runs["naive"]) for i in (0, 1)]
        ours = [max(r[i] for r in runs["ours"]) for i in (0, 1)]
        print(f"loader, one process, {rows} rows of {args.seq_len}+1, best of {args.repeats}"
              f" (M tokens per wall second / per CPU second):")
        print(f"  naive pure-Python packing   {naive[0] / 1e6:8.2f} / {naive[1] / 1e6:8.2f}")
        print(f"  train.stream                {ours[0] / 1e6:8.2f} / {ours[1] / 1e6:8.2f}"
              f"   ratio {ours[0] / naive[0]:.1f}× / {ours[1] / naive[1]:.1f}×  (goal ≥ 20M tokens/s per core)")
        tps, mfu, per_step = bench_trainer(root, args.train_steps)
        print(f"trainer, tiny config on CPU (1 thread, {per_step} tokens/step, no GPU lent): "
              f"{tps:,.0f} tokens/s, MFU {mfu:.1%} of a measured fp32 matmul peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
