"""VQGAN encoder variants on one GPU: bf16 autocast vs bf16 weights × contiguous vs channels-last ×
eager vs torch.compile (and the GPU default with CUDA graphs), batch sweep. Reproduces the variant table of BENCHMARKS.md ("GPU (one H200)").

    PYTHONUNBUFFERED=1 python benchmarks/gpu_vqgan_variants.py --out variants.md [--batches 64,256,512]
    python benchmarks/gpu_vqgan_variants.py --smoke      # tiny config on CPU, compile backend "eager"

LVM's config, random weights (speed does not depend on them); each variant is a
`tokenize_job.encode.BatchEncoder` with those options and is timed on its `encode_latent` alone
(no host transfer, no code search): one warm-up call (compilation), then `--repeats` timed calls.
Input: the real photos of sample_data/ tiled to the batch; the latent's relative error is against
the fp32 eager encoder on the same photos. % of peak: FLOPs per image counted by
torch.utils.flop_counter over the dense bf16 peak (989 TFLOP/s on H100/H200 SXM).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_suite import VARIANTS, encoder_flops, peak_flops, real_photos, smoke_vqgan, sync  # noqa: E402


def time_latent(enc: Any, pixels: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor, float]:
    """(images/s, latents, warm-up seconds) of `enc.encode_latent` on a device batch."""
    with torch.inference_mode():
        t = time.perf_counter()
        z = enc.encode_latent(pixels).clone()  # with CUDA graphs the next call would overwrite it
        sync(pixels.device)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(repeats):
            enc.encode_latent(pixels)
        sync(pixels.device)
    return repeats * len(pixels) / (time.perf_counter() - t), z, warm


def run(batches: list[int], repeats: int, smoke: bool, variants: list[str]) -> list[tuple[str, int, str]]:
    from tokenize_job.encode import BatchEncoder, to_pixels
    from tokenize_job.vqgan import VQGAN, VQGANConfig

    device = torch.device("cpu" if smoke or not torch.cuda.is_available() else "cuda")
    cfg = smoke_vqgan() if smoke else VQGANConfig.lvm()
    torch.manual_seed(0)
    model = VQGAN(cfg).to(device).eval()
    flops, peak = encoder_flops(model, device), peak_flops(device)
    photos = real_photos(cfg.resolution)
    with torch.inference_mode():
        ref = BatchEncoder(model, reference=True).encode_latent(to_pixels(photos, device, False)).float()
    rows = []
    for name in variants:
        opts = dict(VARIANTS[name])
        if opts["compile"] and device.type == "cpu":
            opts["compile"] = "eager"  # dynamo traces the same code; no kernels built on the test machine
        for batch in batches:
            torch._dynamo.reset()  # each encoder compiles afresh, within dynamo's recompile limit
            enc = BatchEncoder(model, batch_size=batch, **opts)
            x = to_pixels(np.resize(photos, (batch, *photos.shape[1:])), device, enc.channels_last)
            rate, z, warm = time_latent(enc, x, repeats)
            k = min(batch, len(photos))
            err = float((z[:k].float() - ref[:k]).norm() / ref[:k].norm())
            rows.append((name, batch, f"{rate:,.0f} | {100 * rate * flops / peak:.1f} | {100 * err:.2f} | {warm:.0f}"))
            print(f"| {name} | {batch} | {rows[-1][2]} |", flush=True)
            del enc, x, z
            if device.type == "cuda":
                torch.cuda.empty_cache()
    head = (f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU (smoke)'}; torch {torch.__version__}; "
            f"{flops / 1e9:.1f} GFLOP/image; peak {peak / 1e12:.3g} TFLOP/s\n")
    print(head)
    return [("", 0, head)] + rows


def table(rows: list[tuple[str, int, str]]) -> str:
    head, body = rows[0][2], rows[1:]
    return (f"# VQGAN encoder variants\n\n{head}\n| variant | batch | images/s | % of peak | latent rel. error vs fp32 % "
            f"| warm-up s |\n|---|---|---|---|---|---|\n" + "".join(f"| {n} | {b} | {r} |\n" for n, b, r in body))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny config on CPU: checks the code, measures nothing")
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default 64,128,256,512; smoke 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up (default 3)")
    p.add_argument("--variants", default="", help="comma-separated indices into the variant list (default all)")
    p.add_argument("--out", help="also write the Markdown table to this file")
    args = p.parse_args(argv)
    batches = [int(b) for b in (args.batches or ("2" if args.smoke else "64,128,256,512")).split(",")]
    names = list(VARIANTS)
    chosen = [names[int(i)] for i in args.variants.split(",")] if args.variants else names
    text = table(run(batches, 1 if args.smoke else args.repeats, args.smoke, chosen))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
