"""The records that flow between sources, builders and shards."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from uvd.annotations import Annotations

# A source may hand over an image still encoded (bytes, decoded lazily by the builder so a
# bad file fails as one item) or already decoded (H×W×3 uint8 RGB).
ImageLike = Union[bytes, np.ndarray]


@dataclass
class Item:
    """One input item as a source reads it: a photo, a video clip, a mesh, an annotated image."""

    item_id: str  # stable: derived from the dataset's own ids or paths, never from enumeration order
    source: str
    images: list[ImageLike] = field(default_factory=list)
    # Keys, types and units: uvd/annotations.py (boxes, keypoints + format, masks, depth, clips, ...).
    annotations: Annotations = field(default_factory=dict)  # type: ignore[assignment]
    label: str | None = None  # class label (category sequences)
    mesh: Any = None  # trimesh.Trimesh / Scene for 3D objects
    provenance: dict[str, Any] = field(default_factory=dict)  # small, JSON-able: path, original ids, frame indices


@dataclass
class Failed:
    """An input item that did not make it, with its reason ("<kind>: <detail>", kind groups the audit)."""

    item_id: str
    reason: str

    @property
    def kind(self) -> str:
        return reason_kind(self.reason)


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or "error"


@dataclass
class VisualSentence:
    """An ordered list of 256×256 RGB images (the trainer appends the end-of-sentence token)."""

    sentence_id: str
    source: str
    task: str
    layout: str
    images: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    # Per image: True stores it losslessly (PNG: rendered masks, skeletons, boxes on black);
    # False stores JPEG (photos). None means all photos.
    lossless: list[bool] | None = None
    item_ids: list[str] = field(default_factory=list)  # input items this sentence used: they end as "ok"

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError(f"sentence {self.sentence_id}: no images")
        if self.lossless is not None and len(self.lossless) != len(self.images):
            raise ValueError(f"sentence {self.sentence_id}: lossless flags do not match images")
