"""Segmentation targets: COCO polygons / RLE → binary masks → palette-coloured maps on black.

Mask decoding uses pycocotools (the COCO reference implementation), which handles the three
COCO encodings: polygons (list of [x0, y0, x1, y1, ...]), uncompressed RLE
({"size": [h, w], "counts": [int, ...]}) and compressed RLE ({"counts": "<string>"}).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from renderers.palette import colorize
from uvd.errors import BadInput


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One COCO `segmentation` value → H×W bool mask; BadInput("bad_mask", ...) when malformed."""
    try:
        if isinstance(segmentation, list):
            polys = [list(map(float, p)) for p in segmentation]
            if not polys:
                raise BadInput("bad_mask", "empty polygon list")
            for p in polys:
                if len(p) < 6 or len(p) % 2:
                    raise BadInput("bad_mask", f"polygon with {len(p)} coordinates (need an even number ≥ 6)")
                if not np.all(np.isfinite(p)):
                    raise BadInput("bad_mask", "polygon with non-finite coordinates")
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
            size = [int(v) for v in segmentation["size"]]
            if size != [height, width]:
                raise BadInput("bad_mask", f"RLE size {size} differs from the image's [{height}, {width}]")
            counts = segmentation["counts"]
            if isinstance(counts, list):
                if sum(int(c) for c in counts) != height * width or any(int(c) < 0 for c in counts):
                    raise BadInput("bad_mask", f"uncompressed RLE counts do not sum to {height}×{width}")
                rle = mask_utils.frPyObjects(segmentation, height, width)
            elif isinstance(counts, (str, bytes)):
                rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
            else:
                raise BadInput("bad_mask", f"RLE counts of type {type(counts).__name__}")
        else:
            raise BadInput("bad_mask", f"unknown segmentation encoding ({type(segmentation).__name__})")
        with warnings.catch_warnings():
            # pycocotools 2.0.11 still passes copy=False to np.array under numpy 2; harmless here.
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = mask_utils.decode(rle)
    except BadInput:
        raise
    except Exception as err:  # pycocotools raises bare Exceptions/ValueErrors for garbage
        raise BadInput("bad_mask", f"{type(err).__name__}: {err}") from None
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != (height, width):
        raise BadInput("bad_mask", f"decoded mask {mask.shape} differs from the image ({height}, {width})")
    return mask.astype(bool)


def decode_segmentation_resized(segmentation: Any, height: int, width: int, out_width: int, out_height: int) -> np.ndarray:
    """Like decode_segmentation, but the mask of an image resized to out_width×out_height.

    Polygons are scaled and rasterised at the new size (cheaper than rasterising at full size,
    and exact to the polygon); RLE masks are decoded at full size and resized nearest-neighbour.
    """
    if (out_width, out_height) == (width, height):
        return decode_segmentation(segmentation, height, width)
    if isinstance(segmentation, list):
        sx, sy = out_width / width, out_height / height
        try:
            scaled = [[float(v) * (sx if i % 2 == 0 else sy) for i, v in enumerate(p)] for p in segmentation]
        except (TypeError, ValueError) as err:
            raise BadInput("bad_mask", f"polygon with non-numeric coordinates ({err})") from None
        return decode_segmentation(scaled, out_height, out_width)
    full = decode_segmentation(segmentation, height, width)
    return cv2.resize(full.view(np.uint8), (out_width, out_height), interpolation=cv2.INTER_NEAREST).astype(bool)


def paint_order(masks: Sequence[np.ndarray]) -> list[int]:
    """Largest first, so a small object lying on a larger one stays visible; ties keep input order."""
    areas = [int(m.sum()) for m in masks]
    return sorted(range(len(masks)), key=lambda i: (-areas[i], i))


def label_map(masks: Sequence[np.ndarray], labels: Sequence[int], height: int, width: int) -> np.ndarray:
    """H×W int32 map: 0 background, else the label of the last mask painted there (see paint_order)."""
    out = np.zeros((height, width), np.int32)
    for i in paint_order(masks):
        out[masks[i]] = int(labels[i])
    return out


def render_semantic(masks: Sequence[np.ndarray], class_ids: Sequence[int], height: int, width: int) -> np.ndarray:
    """Semantic map: each pixel coloured by its class id's palette colour, black background."""
    return colorize(label_map(masks, class_ids, height, width))


def render_instances(masks: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Instance map: the k-th mask (in the given order) gets palette entry k + 1, black background."""
    return colorize(label_map(masks, list(range(1, len(masks) + 1)), height, width))
