"""Fast batched encode/decode of numpy images, inference mode.

On GPU the encoder runs as a bf16 copy of its weights (no autocast), NCHW-contiguous, compiled
with torch.compile: measured fastest on one H200 (BENCHMARKS.md, "GPU (one H200)"). On CPU it
stays fp32, channels-last, one image per forward. The nearest-code search (codebook_search)
always runs in fp32 against the fp32 codebook: in bf16 near-equidistant codes would flip.
"""
from __future__ import annotations

import copy
import logging
import os
from contextlib import nullcontext
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from tokenize_job.codebook_search import nearest_codes, nearest_codes_reference
from tokenize_job.vqgan import VQGAN

logger = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "autocast")


def to_pixels(images: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [0,1] (LVM's preprocessing), converted on the device."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N,H,W,3], got {images.dtype} {list(images.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    return (pixels.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class LatentEncoder(nn.Module):
    """`VQGAN.encode_latent` alone (encoder + quant_conv): the part a bf16 copy needs, not the decoder."""

    def __init__(self, model: VQGAN) -> None:
        super().__init__()
        self.encoder, self.quant_conv = model.encoder, model.quant_conv

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(pixels))


def _default_compile(on_gpu: bool) -> bool:
    # The off switch for clusters where inductor cannot build kernels (no Triton / no compiler):
    # the actors read it from their environment, so no job option is needed to reach them.
    return on_gpu and os.environ.get("UVD_TOKENIZER_COMPILE", "1").lower() not in ("0", "false", "no")


def _bucket(n: int, batch_size: int) -> int:
    """The padded size of a batch of n when compiled: a power of two (≥ 8), at most batch_size, so
    that a job's ragged last batches reuse a few static-shape graphs instead of recompiling."""
    return min(batch_size, max(8, 1 << (n - 1).bit_length()))


class BatchEncoder:
    """Images → codes with the fast path; `reference=True` gives the plain fp32 path to compare with.

    precision: "bf16" runs a bf16 copy of the encoder's weights (the model itself is untouched),
    "autocast" the fp32 weights under bf16 autocast, "fp32" plain fp32; default bf16 on GPU, fp32
    on CPU. channels_last: default off on GPU (GroupNorm and the elementwise ops pay for layout
    conversions: slower there), on for CPU. compile: torch.compile the latent encoder (True, or a
    backend name); default on GPU unless UVD_TOKENIZER_COMPILE=0; a compile error falls back to eager.
    compile_mode: inductor's mode ("reduce-overhead": CUDA graphs; "max-autotune"), default none;
    with CUDA graphs a latent is overwritten by the next call: encode() consumes each one first.
    """

    def __init__(self, model: VQGAN, batch_size: int = 64, channels_last: bool | None = None,
                 precision: str | None = None, reference: bool = False, cpu_batch: int = 1,
                 compile: bool | str | None = None,  # noqa: A002 — torch's own word for it
                 compile_mode: str | None = None) -> None:
        self.model = model.eval()
        self.reference = reference
        self.device = model.device
        on_gpu = self.device.type == "cuda"
        # On CPU one image per forward is fastest: a batch's 256×256 activations overflow the caches
        # (measured, tiny config, 2 threads: batch 1 34 img/s, batch 8 18 img/s). GPUs want big batches.
        self.batch_size = max(1, batch_size if on_gpu or reference else min(batch_size, cpu_batch))
        self.channels_last = (not on_gpu if channels_last is None else channels_last) and not reference
        # bf16 pays on tensor cores; on CPU it is slower than fp32 and only costs accuracy
        self.precision = "fp32" if reference else (precision or ("bf16" if on_gpu else "fp32"))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        self.bf16 = self.precision != "fp32"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.precision == "bf16":
            self.net: nn.Module = copy.deepcopy(LatentEncoder(model)).to(dtype=torch.bfloat16, memory_format=fmt)
        else:
            self.net = LatentEncoder(model.to(memory_format=fmt))
        self.input_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        compile_ = False if reference else (_default_compile(on_gpu) if compile is None else compile)
        self.compiled = bool(compile_)
        self._latent: Callable[[torch.Tensor], torch.Tensor] = self.net
        if self.compiled:
            backend = compile_ if isinstance(compile_, str) else "inductor"
            mode = {"mode": compile_mode} if compile_mode and backend == "inductor" else {}  # modes are inductor's
            # static shapes: _bucket pads ragged batches to a few sizes, each compiled once
            self._latent = torch.compile(self.net, backend=backend, dynamic=False, **mode)

    def _autocast(self):  # noqa: ANN202
        if self.precision == "autocast":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def encode_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """float pixels [B,3,H,W] on the device → latents [B,D,h,w], by the chosen path."""
        pixels = pixels.to(self.input_dtype)
        with self._autocast():
            if not self.compiled:
                return self.net(pixels)
            try:
                return self._latent(pixels)
            except torch._dynamo.exc.TorchDynamoException as err:  # a compile failure, not bad input
                logger.warning("tokenizer: torch.compile failed (%s: %s); encoding eagerly",
                               type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                self.compiled, self._latent = False, self.net
                return self.net(pixels)

    def encode(self, images: np.ndarray) -> np.ndarray:
        n = len(images)
        out = np.empty((n, self.model.config.tokens_per_image), np.uint16)
        codebook = self.model.quantize.embedding.weight  # the fp32 model's, even when the net is a bf16 copy
        with torch.inference_mode():
            for sl in batches(n, self.batch_size):
                chunk = images[sl]
                m = len(chunk)
                if self.compiled and _bucket(m, self.batch_size) > m:
                    pad = np.zeros((_bucket(m, self.batch_size) - m, *chunk.shape[1:]), chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                z = self.encode_latent(to_pixels(chunk, self.device, self.channels_last))[:m]
                flat = z.float().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                idx = nearest_codes_reference(flat, codebook) if self.reference else nearest_codes(flat, codebook)
                out[sl] = idx.reshape(m, -1).to(torch.int32).cpu().numpy().astype(np.uint16)
        return out


def encode_images(model: VQGAN, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 [N,H,W,3] RGB → uint16 [N, (H/16)²] codes in raster order. A one-off call: not compiled
    (compilation pays only over many batches: keep a BatchEncoder for that)."""
    return BatchEncoder(model, batch_size=batch_size, compile=False).encode(images)


def decode_codes(model: VQGAN, codes: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """[N, L] codes → uint8 [N,H,W,3]; codes outside the codebook are an error, not a crash deep in torch."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes: expected [N, L], got shape {list(codes.shape)}")
    if codes.size and (codes.min() < 0 or codes.max() >= model.config.num_embeddings):
        raise ValueError(f"codes: values must lie in [0, {model.config.num_embeddings})")
    res = model.config.resolution * int(round(np.sqrt(codes.shape[1]))) // model.config.latent_size
    out = np.empty((len(codes), res, res, 3), np.uint8)
    device = model.device
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with torch.inference_mode():
        for sl in batches(len(codes), batch_size):
            idx = torch.from_numpy(codes[sl].astype(np.int64)).to(device)
            with autocast:
                pixels = model.decode_code(idx)
            out[sl] = to_uint8(pixels)
    return out
