"""Tokenizer speed and size, side by side in one run.

Encode images/s of the fast path (inference mode, channels-last, batched, chunked fp32 code
search; bf16 autocast on GPU) against a straightforward fp32 reference path (NCHW, one image at
a time, full distance matrix), for the LVM config (random weights) and the tiny config, plus
token agreement between the two. Then bytes per token of token shards on disk.

    python benchmarks/bench_tokenizer.py [--lvm-images 2] [--tiny-images 8] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from tokenize_job.encode import BatchEncoder, encode_images
from tokenize_job.vqgan import VQGAN, VQGANConfig, count_parameters, load_tokenizer
from uvd.config import ImageSpec
from uvd.image import to_sentence_image
from uvd.schema import TOKEN_SCHEMA
from uvd.shards import ShardWriter

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def sample_images(n: int) -> np.ndarray:
    files = sorted((SAMPLES / "images").glob("*.jpg")) + sorted((SAMPLES / "coco").glob("*.jpg"))
    imgs = [to_sentence_image(f.read_bytes(), ImageSpec()) for f in files]
    return np.stack([imgs[i % len(imgs)] for i in range(n)])


def timed(fn, repeats: int = 1) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def compare(name: str, model: VQGAN, images: np.ndarray, batch: int) -> None:
    ref_enc = BatchEncoder(model, batch_size=1, reference=True)
    fast_enc = BatchEncoder(model, batch_size=batch)  # on CPU it runs one image per forward
    fast_enc.encode(images[:1])  # warm-up (oneDNN picks kernels on first use)
    t_fast, fast = timed(lambda: fast_enc.encode(images), repeats=2)
    model.to(memory_format=torch.contiguous_format)
    ref_enc.encode(images[:1])
    t_ref, ref = timed(lambda: ref_enc.encode(images), repeats=2)
    n = len(images)
    agree = float((np.asarray(fast) == np.asarray(ref)).mean())
    print(f"{name:5s} {count_parameters(model) / 1e6:7.1f}M params  {n:3d} images  "
          f"reference {n / t_ref:7.2f} img/s   fast {n / t_fast:7.2f} img/s   "
          f"ratio {t_ref / t_fast:5.2f}x   token agreement {100 * agree:.2f}%")


def bytes_per_token(codes: np.ndarray, per_sentence: int, label: str, tmp: Path) -> None:
    url = str(tmp / f"{label}.parquet")
    w = ShardWriter(url, TOKEN_SCHEMA, "tokens", {"tokenizer_id": label})
    for i in range(0, len(codes), per_sentence):
        c = codes[i:i + per_sentence]
        w.add({"sentence_id": f"s{i:06d}", "source": "bench", "task": "image", "layout": "single",
               "num_images": len(c), "tokens": c.reshape(-1)}, 2 * c.size)
    info = w.close()
    md = pq.ParquetFile(url).metadata
    col = TOKEN_SCHEMA.get_field_index("tokens")
    column = sum(md.row_group(i).column(col).total_compressed_size for i in range(md.num_row_groups))
    # file: everything incl. the footer (tokenizer config JSON, ~3 KB); column: the token pages alone
    print(f"bytes/token {label:40s} file {info.bytes / codes.size:6.3f}   tokens column {column / codes.size:6.3f}"
          f"   ({codes.size} tokens)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lvm-images", type=int, default=2)
    p.add_argument("--tiny-images", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--tokenizer", help="a trained tokenizer dir, for realistic bytes/token (e.g. the demo's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    torch.manual_seed(0)
    if args.lvm_images:
        compare("lvm", VQGAN(VQGANConfig.lvm()).eval().to(dev), sample_images(args.lvm_images), args.lvm_images)
    tiny = VQGAN(VQGANConfig.tiny()).eval().to(dev)
    images = sample_images(args.tiny_images)
    compare("tiny", tiny, images, args.tiny_images)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        # 64 sentences × 16 images: the trainer's sentence length; codes uniform = incompressible worst case
        bytes_per_token(rng.integers(0, 8192, (1024, 256)).astype(np.uint16), 16, "uniform-8192 (worst case)", Path(tmp))
        if args.tokenizer:
            model = load_tokenizer(args.tokenizer, dev)
            n_unique = len(list((SAMPLES / "images").glob("*.jpg")) + list((SAMPLES / "coco").glob("*.jpg")))
            real = encode_images(model, sample_images(n_unique))  # no repeats: they would compress away
            bytes_per_token(real, 16, f"{model.tokenizer_id} on {n_unique} photos", Path(tmp))


if __name__ == "__main__":
    main()
