"""MPII human pose in MMPose's JSON layout (`mpii_train.json` / `mpii_val.json`).

The file is a list of people: `{"image": "005808361.jpg", "joints": 16×[x, y], "joints_vis":
16×{0,1}, "center": [x, y], "scale": s}` (MMPose's tools/dataset_converters output; the joint
order is MMPose's `mpii.py`, see uvd/keypoint_formats.py). MPII in COCO-style JSON goes through
`source: coco` instead (`keypoint_format: mpii`, or auto from its 16 points).

One Item per image, with every person of that image, in the contract of COCO annotated images
(uvd/annotations.py): `width`/`height` from the photo's header (the JSON has none) and
`objects` = [{"id": position in the file, "category_id": 1, "category": "person", "bbox": None,
"keypoints": (16, 3) x, y, v, "keypoint_format": "mpii"}]. MMPose's joints are 0-based pixels;
MPII marks an unlabelled joint (-1, -1) with `joints_vis` 0. A person whose joints are not
16 finite pairs, a visibility not 0/1, or a labelled joint outside the photo fails its image
(`bad_annotation`); a missing photo fails as `io` naming its URL. Paths may be fsspec URLs.
An `image` name is resolved under `images_dir` (`..`, absolute, symlinks out, not UTF-8:
`bad_path`). The file is read once, on the driver, under `max_annotation_bytes`; each unit's
payload carries its own people, so workers never load the file.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
from pydantic import Field, model_validator

from sources.annotation_json import MAX_ANNOTATION_BYTES, contained, read_json, safe_text
from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.image import header_size
from uvd.keypoint_formats import NUM_KEYPOINTS
from uvd.records import Failed, Item

K = NUM_KEYPOINTS["mpii"]


class MpiiOptions(Strict):
    annotations: str  # MMPose's MPII JSON (a list of people)
    images_dir: str  # `image` of each entry is relative to this folder
    max_annotation_bytes: int = Field(MAX_ANNOTATION_BYTES, ge=1)  # the JSON file is read whole
    # the cap decides only whether the file is usable: that shows in every unit's payload
    operational_keys = frozenset({"max_annotation_bytes"})

    @model_validator(mode="after")
    def _exist(self) -> "MpiiOptions":
        require_path(self.annotations, "mpii.annotations")
        require_path(self.images_dir, "mpii.images_dir")
        return self


def load_people(path: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> list[Any]:
    data = read_json(path, "mpii", max_bytes)
    if not isinstance(data, list):
        raise ConfigError(f"mpii: {path} is not a list of people (MMPose's MPII layout); "
                          "COCO-style MPII files go through `source: coco`")
    return data


def parse_person(entry: dict[str, Any], pid: int, width: int, height: int) -> dict[str, Any]:
    joints, vis = entry.get("joints"), entry.get("joints_vis")
    # numbers only: numpy would take "12" or True for a coordinate
    if (not isinstance(joints, list) or len(joints) != K or not all(_numbers(j, 2) for j in joints)
            or not _numbers(vis, K)):
        raise BadInput("bad_annotation", f"person {pid}: joints/joints_vis must be {K}×[x, y] and {K} flags")
    try:
        xy = np.asarray(joints, np.float64).reshape(K, 2)
        v = np.asarray(vis, np.float64).reshape(K)
    except OverflowError:  # an integer literal past float range
        raise BadInput("bad_annotation", f"person {pid}: a joint is not a finite number") from None
    if not np.isfinite(xy).all() or not np.isin(v, (0, 1)).all():
        raise BadInput("bad_annotation", f"person {pid}: non-finite joint or visibility not 0/1")
    outside = (v > 0) & ((xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] > width) | (xy[:, 1] > height))
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise BadInput("bad_annotation", f"person {pid}: joint {k} at ({xy[k, 0]:g}, {xy[k, 1]:g}) "
                                         f"outside the {width}x{height} image")
    return {"id": pid, "category_id": 1, "category": "person", "iscrowd": 0, "bbox": None, "segmentation": None,
            "keypoints": np.concatenate([xy, v[:, None]], axis=1), "keypoint_format": "mpii"}


def _numbers(values: Any, n: int) -> bool:
    return (isinstance(values, list) and len(values) == n
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values))


class MpiiSource(Source):
    name = "mpii"
    Options = MpiiOptions
    item_key = "images"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        people = load_people(self.options.annotations, self.options.max_annotation_bytes)
        by_image: dict[str, list[list[Any]]] = {}
        bad: list[list[str]] = []
        for i, entry in enumerate(people):
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                bad.append([f"entry:{i}", "bad_json: person entry without an `image` name"])
                continue
            by_image.setdefault(entry["image"], []).append([i, entry.get("joints"), entry.get("joints_vis")])
        del people
        # one JSON string per image: the payloads together cost about the file's size, not a parse of it
        rows = [[name, json.dumps(by_image[name], separators=(",", ":"))] for name in sorted(by_image)]
        units: list[dict[str, Any]] = [{"images": part} for part in chunk(rows, items_per_unit)] or [{"images": []}]
        if bad:
            units[0]["bad_entries"] = bad
        return units

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["images"]) + len(payload.get("bad_entries", []))

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for pseudo_id, reason in payload.get("bad_entries", []):
            yield Failed(pseudo_id, reason)
        for name, people in payload["images"]:
            try:
                yield self._item(name, json.loads(people))
            except Exception as err:  # one bad value fails its image, never the unit
                yield Failed(safe_text(name), reason_of(err))

    def _item(self, name: str, people: list[list[Any]]) -> Item:
        data = read_bytes(contained(self.options.images_dir, name))
        width, height = header_size(data)
        objects = [parse_person({"joints": joints, "joints_vis": vis}, pid, width, height)
                   for pid, joints, vis in people]
        return Item(item_id=name, source=self.ctx.dataset, images=[data],
                    annotations={"width": width, "height": height, "objects": objects},
                    provenance={"file_name": name, "people": len(people)})
