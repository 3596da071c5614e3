"""Images with semantic label maps (ADE20K / ADEChallengeData2016 style): a folder of photos
and a folder of single-channel PNGs of class indices, matched by relative name.

Items carry the map as display ids for the shared palette (renderers/palette.py, entry 0 is
black): 0 = unlabelled, k ≥ 1 = class k. ADE20K already stores "other / unlabelled" as 0 and
its 150 classes as 1..150, so its ids pass unchanged. Pixels equal to `ignore_index` become 0.
For datasets where 0 is a real class (Cityscapes trainIds: 0 = road), `zero_is_class` shifts
every class up by one so that class 0 is coloured too.
"""
from __future__ import annotations

import io
import posixpath
from typing import Any, Iterator

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from sources.paired import index_folder, match_folders
from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, reason_of
from uvd.records import Failed, Item


class SegmentationOptions(Strict):
    images: str  # e.g. ADEChallengeData2016/images/training
    labels: str  # e.g. ADEChallengeData2016/annotations/training
    ignore_index: int = Field(255, ge=0)
    zero_is_class: bool = False
    num_classes: int | None = Field(None, ge=1)  # when set, a class id past the last class (not ignore) is bad input
    image_suffixes: list[str] = Field(default_factory=lambda: [".jpg", ".jpeg", ".png"])
    label_suffixes: list[str] = Field(default_factory=lambda: [".png"])

    @model_validator(mode="after")
    def _paths_exist(self) -> "SegmentationOptions":
        require_path(self.images, "segmentation.images")
        require_path(self.labels, "segmentation.labels")
        return self


def decode_label_map(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG of class indices (8- or 16-bit grey, or palette-indexed) → H×W int32.

    Palette PNGs (Pascal VOC style) keep their indices: PIL gives them without applying the
    palette, where OpenCV would turn them into colours."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadInput("too_large", f"label map {w}x{h} exceeds max_pixels={max_pixels}")
            if im.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise BadInput("label", f"label map must hold one class index per pixel, got mode {im.mode}")
            return np.asarray(im, dtype=np.int32).copy()
    except BadInput:
        raise
    except Exception as err:
        raise BadInput("decode", f"label map: {type(err).__name__}: {err}") from None


class SegmentationSource(Source):
    """Items: `images=[photo bytes]`, `annotations={"label_map": H×W int32 display ids (0 = none)}`."""

    name = "segmentation"
    Options = SegmentationOptions
    item_key = "items"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        o = self.options
        rows = match_folders(index_folder(o.images, o.image_suffixes), index_folder(o.labels, o.label_suffixes),
                             "image", "label map")
        return [{"items": [list(r) for r in part]} for part in chunk(rows, items_per_unit)]

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["items"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        o = self.options
        for item_id, image_path, label_path, problem in payload["items"]:
            if problem:
                yield Failed(item_id, problem)
                continue
            try:
                photo, raw = read_bytes(image_path), read_bytes(label_path)
                labels = decode_label_map(raw, self.ctx.image.max_pixels)
                ignored = labels == o.ignore_index
                if o.num_classes is not None:
                    top = o.num_classes - 1 if o.zero_is_class else o.num_classes
                    bad = (labels > top) & ~ignored
                    if bad.any():
                        raise BadInput("label", f"class index {int(labels[bad].max())} > {top} (num_classes={o.num_classes})")
                labels = np.where(ignored, 0, labels + 1 if o.zero_is_class else labels).astype(np.int32)
            except Exception as err:  # one bad file fails its item, never the unit
                yield Failed(item_id, reason_of(err))
                continue
            yield Item(item_id=item_id, source=self.ctx.dataset, images=[photo],
                       annotations={"label_map": labels},
                       provenance={"image": posixpath.basename(image_path), "label_map": posixpath.basename(label_path)})
