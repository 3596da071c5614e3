"""`/tokens/<sentence_id>`: a sentence decoded back from its token shard, beside the original.

The tokenizer (torch) is loaded on the first request only, so `uvd view` without --tokenizer, and
every other page, never imports torch. The token shard of a sentence is the one of its unit:
<out>/tokens/<tokenizer id>/<dataset>/part-<unit>.parquet.
"""
from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np
import pyarrow.compute as pc

from uvd import codec
from uvd.cli.view.data import BuildView, NotFound
from uvd.layout import UnitLayout, tokens_root
from uvd.storage import exists


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (capped where they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


class TokenView:
    def __init__(self, build: BuildView, tokenizer_dir: str) -> None:
        self.build, self.tokenizer_dir = build, tokenizer_dir
        self._model: Any = None
        self._lock = threading.Lock()
        self._decoded: dict[str, list[bytes]] = {}  # sentence id → decoded images as PNG (last few)
        self._pages: dict[str, dict[str, Any]] = {}  # sentence id → its page (decoding is the slow part)

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from tokenize_job.vqgan import load_tokenizer

                self._model = load_tokenizer(self.tokenizer_dir)
            return self._model

    def page(self, sentence_id: str, hint: str | None = None) -> dict[str, Any]:
        with self._lock:
            done = self._pages.get(sentence_id)
        return done if done is not None else self._make(sentence_id, hint)

    def _make(self, sentence_id: str, hint: str | None) -> dict[str, Any]:
        ds, u, _ = self.build.locate(sentence_id, hint)
        model = self.model()
        root = tokens_root(self.build.out, model.tokenizer_id)
        shard = UnitLayout.tokens(root).shard(ds.name, ds.units[u])
        if not exists(shard):
            raise NotFound(f"no token shard {shard} (tokenized with {model.tokenizer_id}? `uvd tokenize`)")
        opened = self.build._open(shard)  # the same containment and file cache as the sentence shards
        with opened.lock:
            t = opened.pf.read(columns=["sentence_id", "num_images", "tokens"], use_threads=False)
        t = t.filter(pc.equal(t.column("sentence_id"), sentence_id))
        if not t.num_rows:
            raise NotFound(f"sentence {sentence_id!r} is not in {shard} (it failed to tokenize? see its audit)")
        row = t.to_pylist()[0]
        n = int(row["num_images"])
        codes = np.asarray(row["tokens"], np.int64).reshape(n, -1)
        from tokenize_job.encode import decode_codes

        with self._lock:  # one decode at a time: the model is shared
            decoded = decode_codes(model, codes)
        originals = [codec.decode(self.build.image(sentence_id, i, hint)) for i in range(n)]
        pngs, scores = [], []
        for orig, dec in zip(originals, decoded):
            ok, buf = cv2.imencode(".png", cv2.cvtColor(dec, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError("PNG encoding failed")
            pngs.append(buf.tobytes())
            scores.append(round(psnr(orig, dec), 2) if orig.shape == dec.shape else None)
        at = f"{ds.name}/{ds.units[u]}"
        valid = [s for s in scores if s is not None]
        page = {"sentence_id": sentence_id, "dataset": ds.name, "unit": ds.units[u], "at": at,
                "tokenizer_id": model.tokenizer_id, "num_images": n, "tokens_per_image": int(codes.shape[1]),
                "psnr": scores, "mean_psnr": round(float(np.mean(valid)), 2) if valid else None,
                "originals": [f"/image/{sentence_id}/{i}?at={at}" for i in range(n)],
                "decoded": [f"/tokens/{sentence_id}/image/{i}?at={at}" for i in range(n)]}
        with self._lock:
            self._decoded[sentence_id], self._pages[sentence_id] = pngs, page
            while len(self._decoded) > 32:
                oldest = next(iter(self._decoded))
                del self._decoded[oldest], self._pages[oldest]
        return page

    def decoded_image(self, sentence_id: str, index: int, hint: str | None = None) -> bytes:
        with self._lock:
            pngs = self._decoded.get(sentence_id)
        if pngs is None:
            self.page(sentence_id, hint)
            with self._lock:
                pngs = self._decoded.get(sentence_id, [])
        if not 0 <= index < len(pngs):
            raise NotFound(f"sentence {sentence_id!r} has no decoded image {index}")
        return pngs[index]
