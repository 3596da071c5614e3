"""The one fixed colour palette for rendered annotations: classes, instances, segmentation maps.

`PALETTE` has 256 RGB entries. Entry 0 is black, the background of every rendered map.
Entry i ≥ 1 has hue (i − 1) · φ⁻¹ (mod 1) — the golden-ratio step, so neighbouring ids get
far-apart hues — with saturation and value cycling through four levels,
(s, v) ∈ {(1.0, 1.0), (0.65, 1.0), (1.0, 0.75), (0.65, 0.75)}[(i − 1) mod 4], rounded to
uint8. Ids above 255 wrap to 1…255. A class id (e.g. COCO `category_id`) keeps the same
colour in every task (detection boxes, semantic maps); instance k of an image gets entry
k + 1. The table is computed once here and pinned by tests; docs/annotations.md shows it.
"""
from __future__ import annotations

import colorsys

import numpy as np

_GOLDEN = 0.6180339887498949
_LEVELS = ((1.0, 1.0), (0.65, 1.0), (1.0, 0.75), (0.65, 0.75))


def _build() -> np.ndarray:
    table = np.zeros((256, 3), np.uint8)
    for i in range(1, 256):
        hue = ((i - 1) * _GOLDEN) % 1.0
        s, v = _LEVELS[(i - 1) % 4]
        table[i] = [int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, s, v)]
    table.setflags(write=False)
    return table


PALETTE: np.ndarray = _build()


def palette_index(label: int) -> int:
    """Palette entry of a label id: 0 stays background, ids ≥ 1 wrap into 1…255."""
    label = int(label)
    if label < 0:
        raise ValueError(f"negative label id {label}")
    return 0 if label == 0 else (label - 1) % 255 + 1


def class_color(class_id: int) -> tuple[int, int, int]:
    """The colour of a class id (≥ 1; 0 is the background and black)."""
    r, g, b = PALETTE[palette_index(class_id)]
    return int(r), int(g), int(b)


def instance_color(index: int) -> tuple[int, int, int]:
    """The colour of the index-th instance (0-based) of one image."""
    return class_color(int(index) + 1)


def colorize(labels: np.ndarray) -> np.ndarray:
    """An H×W integer label map (0 = background) → H×W×3 uint8 RGB through the palette."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected an H×W integer label map, got {labels.shape} {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("negative label ids in label map")
    idx = np.where(labels == 0, 0, (labels.astype(np.int64) - 1) % 255 + 1)
    return PALETTE[idx]
