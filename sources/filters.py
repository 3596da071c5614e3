"""Filters for web images: metadata thresholds, size and shape, exact and near duplicates.

Each refusal names its filter: `filtered: <filter> (<why>)`, or `duplicate: of <item id>
(<how>)`. These filters see one work unit; repeats across units are found before the units
run (sources/laion_dedup.py, against an index kept in the output) and after the build (uvd/dedup.py).
"""
from __future__ import annotations

import hashlib
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from uvd.config import Strict
from uvd.errors import BadInput
from uvd.image import decode_image, header_size


class FilterOptions(Strict):
    min_side: int = Field(0, ge=0)  # shorter side, from the metadata when given, then from the image header
    max_aspect_ratio: float | None = Field(None, ge=1.0)  # long side / short side
    max_punsafe: float | None = None  # rows with a higher punsafe are dropped before downloading
    max_pwatermark: float | None = None
    min_similarity: float | None = None  # CLIP image-text similarity
    dedup_url: bool = True
    dedup_content: bool = True  # same bytes (sha256)
    near_dup_distance: int | None = Field(None, ge=0, le=64)  # dHash Hamming distance; None = off


def _size_reason(o: FilterOptions, w: float, h: float, where: str) -> str | None:
    short, long_ = min(w, h), max(w, h)
    if o.min_side and short < o.min_side:
        return f"filtered: min_side ({where} {w:g}x{h:g}, short side < {o.min_side})"
    if o.max_aspect_ratio and short > 0 and long_ / short > o.max_aspect_ratio:
        return f"filtered: max_aspect_ratio ({where} {w:g}x{h:g}, ratio {long_ / short:.2f} > {o.max_aspect_ratio:g})"
    return None


def dhash(data: bytes) -> int:
    """64-bit difference hash of the image (decoded at reduced size: only 9×8 pixels are kept)."""
    img = decode_image(data, min_side=16)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


class UnitFilters:
    """The filters with the state of one unit (what was seen), applied in the unit's row order."""

    def __init__(self, options: FilterOptions) -> None:
        self.o = options
        self._urls: dict[str, str] = {}
        self._digests: dict[str, str] = {}
        self._dhashes: list[tuple[int, str]] = []

    def check_metadata(self, row: dict[str, Any]) -> str | None:
        """Before downloading: thresholds on the metadata's own columns (absent values pass)."""
        o = self.o
        if o.max_punsafe is not None and row.get("punsafe") is not None and row["punsafe"] > o.max_punsafe:
            return f"filtered: max_punsafe (punsafe {row['punsafe']:.3g} > {o.max_punsafe:g})"
        if o.max_pwatermark is not None and row.get("pwatermark") is not None and row["pwatermark"] > o.max_pwatermark:
            return f"filtered: max_pwatermark (pwatermark {row['pwatermark']:.3g} > {o.max_pwatermark:g})"
        if o.min_similarity is not None and row.get("similarity") is not None and row["similarity"] < o.min_similarity:
            return f"filtered: min_similarity (similarity {row['similarity']:.3g} < {o.min_similarity:g})"
        w, h = row.get("width"), row.get("height")
        if w and h and w > 0 and h > 0:
            return _size_reason(o, w, h, "metadata")
        return None

    def check_url(self, item_id: str, url: str) -> str | None:
        if not self.o.dedup_url:
            return None
        first = self._urls.setdefault(url, item_id)
        return None if first == item_id else f"duplicate: of {first} (same url)"

    def check_image(self, item_id: str, data: bytes) -> str | None:
        """After downloading: the real size from the header (no decoding), then duplicates."""
        w, h = header_size(data)
        reason = _size_reason(self.o, w, h, "image")
        if reason:
            return reason
        if self.o.dedup_content:
            digest = hashlib.sha256(data).hexdigest()
            first = self._digests.setdefault(digest, item_id)
            if first != item_id:
                return f"duplicate: of {first} (same content)"
        if self.o.near_dup_distance is not None:
            try:
                h64 = dhash(data)
            except BadInput:
                return None  # the builder will report the decode error itself
            for other, other_id in self._dhashes:
                dist = bin(h64 ^ other).count("1")
                if dist <= self.o.near_dup_distance:
                    return f"duplicate: of {other_id} (near: dHash distance {dist})"
            self._dhashes.append((h64, item_id))
        return None
