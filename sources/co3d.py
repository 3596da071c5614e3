"""CO3D (v2) as multi-view sequences: one item per object sequence, frames in frame order.

The release layout (facebookresearch/co3d, co3d/dataset/data_types.py): `<root>/<category>/
frame_annotations.jgz`, a gzipped JSON list of FrameAnnotation (`sequence_name`, `frame_number`,
`image: {path, size: [H, W]}`, `mask: {path}`, `depth: {path, scale_adjustment, mask_path}`,
`viewpoint: {R, T, focal_length, principal_point}`), with every path relative to `<root>`, and the
files under `<root>/<category>/<sequence>/images/frameNNNNNN.jpg` (`masks/`, `depths/`,
`depth_masks/` beside). The annotation files are read on the driver at plan time (under a byte
cap); a unit's payload carries its sequences' frame lists.

Frames, as LVM's tokenize_co3d_muse.py draws them (`randomly_subsample_frame_indices`,
evaluation/vqlm_demo/utils.py): a stride drawn from [1, min((L - 1) // (n - 1), max_stride)], then a
start from [0, L - (n - 1) · stride), both from a generator seeded by (build seed, dataset,
sequence); one clip per sequence (LVM's n_epochs=1). LVM's n_frames is 4 (four sequences per
sentence, each with its masks); here `frames` defaults to 16, one sequence's 16 views per sentence
(the paper's multi-view sequences). A sequence with fewer than `frames` frames is audited
`too_short`. Items go to the `video` builder (layout `sequence`, task `multiview`); the chosen
frames' mask and depth-mask paths and cameras are in the provenance. Not built: LVM's
image→mask and image→depth-mask sentences of four sequences.
"""
from __future__ import annotations

import gzip
import io
import json
import posixpath
from typing import Any, Iterator

import numpy as np
from pydantic import Field, model_validator

from sources.annotation_json import MAX_ANNOTATION_BYTES, bad_file_entry, contained, safe_text
from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.records import Failed, Item
from uvd.storage import fs_and_path

ANNOTATIONS = "frame_annotations.jgz"


class Co3dOptions(Strict):
    root: str  # the dataset root: one folder per category
    categories: list[str] | None = None  # None: every folder under root with a frame_annotations.jgz
    frames: int = Field(16, ge=2, le=16)  # views per sentence
    max_stride: int = Field(4, ge=1)  # LVM's max_stride
    max_annotation_bytes: int = Field(MAX_ANNOTATION_BYTES, gt=0)  # per annotation file, unzipped

    @model_validator(mode="after")
    def _exists(self) -> "Co3dOptions":
        require_path(self.root, "co3d.root")
        return self


def lvm_frame_indices(length: int, n: int, max_stride: int, rng: np.random.Generator) -> tuple[int, int, list[int]]:
    """(stride, start, indices): LVM's randomly_subsample_frame_indices with a seeded generator."""
    stride = int(rng.integers(1, min((length - 1) // (n - 1), max_stride) + 1))
    start = int(rng.integers(0, length - (n - 1) * stride))
    return stride, start, [start + k * stride for k in range(n)]


def _frame(entry: Any) -> list[Any]:
    """[frame_number, image path, mask path, depth-mask path, camera] of one FrameAnnotation."""
    if not isinstance(entry, dict) or not isinstance(entry.get("sequence_name"), str) \
            or not isinstance(entry.get("frame_number"), int) or not isinstance(entry.get("image"), dict) \
            or not isinstance(entry["image"].get("path"), str):
        raise ValueError("not a FrameAnnotation (sequence_name, frame_number, image.path)")
    mask = entry.get("mask") if isinstance(entry.get("mask"), dict) else {}
    depth = entry.get("depth") if isinstance(entry.get("depth"), dict) else {}
    vp = entry.get("viewpoint") if isinstance(entry.get("viewpoint"), dict) else None
    camera = {k: vp.get(k) for k in ("R", "T", "focal_length", "principal_point")} if vp else None
    return [entry["frame_number"], entry["image"]["path"], mask.get("path"), depth.get("mask_path"), camera]


class Co3dSource(Source):
    name = "co3d"
    Options = Co3dOptions
    item_key = "sequences"  # one entry per sequence: the planner may regroup them (uvd/regroup.py)

    def _categories(self) -> list[str]:
        if self.options.categories is not None:
            return sorted(self.options.categories)
        fs, path = fs_and_path(self.options.root)
        found = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)
                 if fs.isfile(posixpath.join(p, ANNOTATIONS))]
        if not found:
            raise ConfigError(f"co3d: no <category>/{ANNOTATIONS} under {self.options.root}")
        return sorted(found)

    def _load(self, category: str) -> Any:
        url = contained(self.options.root, f"{category}/{ANNOTATIONS}")
        cap = self.options.max_annotation_bytes
        data = read_bytes(url, cap)
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            text = f.read(cap + 1)  # a gzip bomb stops at the cap
        if len(text) > cap:
            raise BadInput("too_large", f"{ANNOTATIONS} unzips to more than {cap} bytes")
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise BadInput("bad_json", f"{ANNOTATIONS} is not a list of frame annotations")
        return entries

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        rows: list[list[Any]] = []
        bad: list[list[str]] = []
        for category in self._categories():
            try:
                entries = self._load(category)
            except Exception as err:  # one unusable category file is one audit row, not the build
                bad.append(bad_file_entry(f"{category}/{ANNOTATIONS}", err))
                continue
            by_sequence: dict[str, list[list[Any]]] = {}
            for i, entry in enumerate(entries):
                try:
                    by_sequence.setdefault(entry["sequence_name"], []).append(_frame(entry))
                except Exception as err:
                    bad.append([f"entry:{category}:{i}", f"bad_annotation: {category}/{ANNOTATIONS} entry {i}: "
                                                          f"{reason_of(err)}"])
            for seq in sorted(by_sequence):
                frames = sorted(by_sequence[seq], key=lambda f: f[0])
                rows.append([safe_text(f"{category}/{seq}"), json.dumps(frames, separators=(",", ":"))])
        units: list[dict[str, Any]] = [{"sequences": part} for part in chunk(rows, items_per_unit)] or [{"sequences": []}]
        if bad:
            units[0]["bad_entries"] = bad
        return units

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["sequences"]) + len(payload.get("bad_entries", []))

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for pseudo_id, reason in payload.get("bad_entries", []):
            yield Failed(pseudo_id, reason)
        for item_id, frames in payload["sequences"]:
            try:
                yield self._item(item_id, json.loads(frames))
            except Exception as err:  # one bad sequence fails alone
                yield Failed(item_id, reason_of(err))

    def _item(self, item_id: str, frames: list[list[Any]]) -> Item:
        n = self.options.frames
        if len(frames) < n:
            raise BadInput("too_short", f"{len(frames)} frames < {n} views per sentence")
        stride, start, chosen = lvm_frame_indices(len(frames), n, self.options.max_stride,
                                                  self.ctx.rng(item_id, "co3d-frames"))
        picked = [frames[i] for i in chosen]
        images = [read_bytes(contained(self.options.root, f[1])) for f in picked]
        category, sequence = item_id.split("/", 1)
        clip = {"indices": chosen, "stride": stride, "requested_stride": stride, "start": start}
        return Item(item_id=item_id, source=self.ctx.dataset, images=images,
                    annotations={"clips": [clip], "frame_indices": chosen, "task": "multiview"},
                    provenance={"category": category, "sequence": sequence, "frames_in_sequence": len(frames),
                                "frame_numbers": [f[0] for f in picked], "masks": [f[2] for f in picked],
                                "depth_masks": [f[3] for f in picked], "cameras": [f[4] for f in picked]})
