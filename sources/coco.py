"""COCO: images with instances and/or person-keypoints annotations (one JSON file or several).

One Item per image: `item_id` is the COCO image id (as a string), `images` holds the encoded
photo (decoded later by the task, so a bad file fails as one item), `annotations` holds
everything in ORIGINAL pixel coordinates:

    {"width": w, "height": h,                       # from the JSON `images` entry
     "objects": [{"id", "category_id", "category", "bbox": [x, y, w, h], "iscrowd",
                  "segmentation": polygons | RLE | None,
                  "keypoints": (K, 3) float array (x, y, v) | None,
                  "keypoint_format": a name in uvd/keypoint_formats.py | None}, ...]}   # sorted by id

(the keys are `uvd.annotations.AnnotatedImage` / `AnnotatedObject`). `keypoint_format` is the
`keypoint_format` option, or with `auto` the format of the annotation's category, found from
its `keypoints` names (or, without names, from the number of points: 14 is ambiguous, AIC or
CrowdPose, and fails with a reason asking for the option). COCO-WholeBody's separate
`foot_kpts`, `face_kpts`, `lefthand_kpts`, `righthand_kpts` are appended to the 17 body points
in that order (133 points, MMPose's order); a part flagged `*_valid: false` counts as absent.

Several JSON files (e.g. instances_val2017 + person_keypoints_val2017) are merged by image id
and annotation id: the same annotation in two files becomes one object with the union of its
fields. Every annotation is checked when its image is read: a box of zero or negative size,
a non-finite or short bbox, a visible keypoint outside the image, an unknown category id or a
keypoint array that is not K×3 for its format fails the whole image (`bad_annotation: ...`): a half-annotated
image would teach the model to miss objects. A missing photo fails as `io: ...`.

A file that is not valid JSON (truncated, malformed) or has no `images` list gives no image
list at all, so `plan()` raises a ConfigError naming the file: the build stops before it
starts instead of auditing nothing. Workers parse the JSON once per process (an LRU cache
keyed by path, size and mtime); payloads carry only (image id, file name) pairs.
"""
from __future__ import annotations

import functools
import json
import math
import posixpath
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import field_validator

from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError
from uvd.keypoint_formats import NUM_KEYPOINTS, FormatOption, detect_format, undetected_reason
from uvd.records import Failed, Item
from uvd.storage import fs_and_path, join


class CocoOptions(Strict):
    annotations: list[str]  # COCO JSON files (instances, person_keypoints, ...), merged by image id
    images_dir: str  # `file_name` of each image is relative to this folder
    # The keypoints' format (uvd/keypoint_formats.py); auto: from each category's keypoint names/count.
    keypoint_format: FormatOption = "auto"
    # Annotations reaching past the image: refuse the image (COCO's rule), or clip: a box is cut to
    # the frame (one wholly outside is still refused) and a point outside counts as unlabelled.
    # PoseTrack18 needs clip: its boxes have a margin and its head tops leave the frame.
    outside: Literal["refuse", "clip"] = "refuse"

    @field_validator("annotations", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("annotations")
    @classmethod
    def _exist(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one COCO annotation file")
        for p in v:
            require_path(p, "coco.annotations")
        return v

    @field_validator("images_dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        return require_path(v, "coco.images_dir")


class CocoIndex:
    """The parsed annotation files: images by id, annotations grouped by image id, categories."""

    def __init__(self, paths: list[str]) -> None:
        self.images: dict[int, dict[str, Any]] = {}
        self.categories: dict[int, str] = {}
        self.category_keypoints: dict[int, list[str]] = {}  # the category's `keypoints` names, when given
        anns: dict[int, dict[str, Any]] = {}
        # Entries that belong to no image we can read: audited under a pseudo id, never dropped.
        self.bad_entries: list[tuple[str, str]] = []
        for path in paths:
            name = posixpath.basename(path)
            data = _load_json(path)
            for cat in data.get("categories") or []:
                if isinstance(cat, dict) and isinstance(cat.get("id"), int):
                    self.categories[cat["id"]] = str(cat.get("name", cat["id"]))
                    if isinstance(cat.get("keypoints"), list) and cat["keypoints"]:
                        self.category_keypoints[cat["id"]] = [str(n) for n in cat["keypoints"]]
            for i, img in enumerate(data["images"]):
                if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
                    self.bad_entries.append((f"{name}:images[{i}]", "bad_json: image entry without an integer `id` and a `file_name`"))
                    continue
                self.images.setdefault(img["id"], img)
            for i, ann in enumerate(data.get("annotations") or []):
                if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
                    self.bad_entries.append((f"{name}:annotations[{i}]", "bad_json: annotation without an integer `image_id`"))
                    continue
                key = ann["id"] if isinstance(ann.get("id"), int) else -(i + 1)
                merged = anns.setdefault(key, {})
                merged.update({k: v for k, v in ann.items() if v is not None})
        self.by_image: dict[int, list[dict[str, Any]]] = {}
        for key in sorted(anns):
            iid = anns[key]["image_id"]
            if iid not in self.images:
                self.bad_entries.append((f"annotation:{key}", f"bad_json: annotation {key} refers to unknown image_id {iid}"))
                continue
            self.by_image.setdefault(iid, []).append(anns[key])


def read_json(path: str, who: str) -> Any:
    """A JSON annotation file; ConfigError (naming the source `who`) when unreadable or malformed."""
    try:
        fs, p = fs_and_path(path)
        with fs.open(p, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{who}: {path} is not valid JSON (truncated or malformed): {err}") from None
    except OSError as err:
        raise ConfigError(f"{who}: cannot read {path}: {err.strerror or err}") from None


def _load_json(path: str) -> dict[str, Any]:
    data = read_json(path, "coco")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"coco: {path} has no `images` list: not a COCO annotation file")
    return data


@functools.lru_cache(maxsize=2)
def _cached_index(key: tuple[tuple[str, int, str], ...]) -> CocoIndex:
    return CocoIndex([p for p, _, _ in key])


def load_index(paths: list[str]) -> CocoIndex:
    """The parsed files, once per process while they are unchanged on disk."""
    key = []
    for p in paths:
        try:
            fs, path = fs_and_path(p)
            info = fs.info(path)
        except OSError as err:
            raise ConfigError(f"coco: cannot read {p}: {err.strerror or err}") from None
        # Local files have mtime; object stores an ETag or LastModified: any of them marks a change.
        version = info.get("mtime") or info.get("ETag") or info.get("LastModified") or ""
        key.append((str(p), int(info.get("size") or 0), str(version)))
    return _cached_index(tuple(key))


def _finite(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def parse_object(ann: dict[str, Any], width: int, height: int, categories: dict[int, str],
                 keypoint_format: str = "auto", category_keypoints: dict[int, list[str]] | None = None,
                 outside: str = "refuse") -> dict[str, Any]:
    """One COCO annotation → a checked object in original pixel coordinates; BadInput when bad."""
    aid = ann.get("id", "?")
    cid = ann.get("category_id")
    if not isinstance(cid, int) or (categories and cid not in categories):
        raise BadInput("bad_annotation", f"annotation {aid}: unknown category_id {cid!r}")
    obj: dict[str, Any] = {"id": aid, "category_id": cid, "category": categories.get(cid, str(cid)),
                           "iscrowd": int(ann.get("iscrowd", 0) or 0), "bbox": None,
                           "segmentation": ann.get("segmentation") or None, "keypoints": None,
                           "keypoint_format": None}
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not _finite(bbox):
            raise BadInput("bad_annotation", f"annotation {aid}: bbox {bbox!r} is not 4 finite numbers")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise BadInput("bad_annotation", f"annotation {aid}: box of zero or negative size {w}x{h}")
        if outside == "clip" and x < width and y < height and x + w > 0 and y + h > 0:
            x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
            x, y, w, h = x0, y0, x1 - x0, y1 - y0
        # COCO boxes lie inside the image; allow a pixel of slack for float export rounding.
        if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
            raise BadInput("bad_annotation", f"annotation {aid}: box {bbox} outside the {width}x{height} image")
        obj["bbox"] = [x, y, w, h]
    kps = _keypoint_list(ann, aid)
    if kps:
        fmt = keypoint_format if keypoint_format != "auto" else detect_format(
            (category_keypoints or {}).get(cid), len(kps) // 3 if isinstance(kps, list) else 0,
            wholebody_fields=any(f in ann for f in WHOLEBODY_PARTS))
        if fmt is None:
            raise BadInput("bad_annotation", f"annotation {aid}: " + undetected_reason(
                (category_keypoints or {}).get(cid), len(kps) // 3 if isinstance(kps, list) else 0))
        k = NUM_KEYPOINTS[fmt]
        if not isinstance(kps, list) or len(kps) != 3 * k or not _finite(kps):
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise BadInput("bad_annotation", f"annotation {aid}: keypoints must be {k}×(x, y, v) numbers "
                                             f"({fmt}), got {n}")
        arr = np.asarray(kps, np.float64).reshape(k, 3)
        if np.any(arr[:, 2] < 0):
            raise BadInput("bad_annotation", f"annotation {aid}: negative keypoint visibility")
        if fmt not in ("coco_wholebody", "halpe136") and np.any(~np.isin(arr[:, 2], (0, 1, 2))):
            raise BadInput("bad_annotation", f"annotation {aid}: keypoint visibility not in {{0, 1, 2}}")
        shown = arr[:, 2] > 0
        beyond = shown & ((arr[:, 0] < 0) | (arr[:, 1] < 0) | (arr[:, 0] > width) | (arr[:, 1] > height))
        if outside == "clip":
            arr[beyond, 2] = 0
        elif beyond.any():
            k = int(np.flatnonzero(beyond)[0])
            raise BadInput("bad_annotation", f"annotation {aid}: keypoint {k} at ({arr[k, 0]:g}, {arr[k, 1]:g}) "
                                             f"outside the {width}x{height} image")
        obj["keypoints"] = arr
        obj["keypoint_format"] = fmt
    return obj


# COCO-WholeBody's parts after the 17 body points, in MMPose's order, and their validity flags.
WHOLEBODY_PARTS: dict[str, tuple[int, str]] = {
    "foot_kpts": (6, "foot_valid"), "face_kpts": (68, "face_valid"),
    "lefthand_kpts": (21, "lefthand_valid"), "righthand_kpts": (21, "righthand_valid"),
}


def _keypoint_list(ann: dict[str, Any], aid: Any) -> Any:
    """The annotation's keypoints as one flat list; COCO-WholeBody's parts appended to the body."""
    kps = ann.get("keypoints")
    if not any(f in ann for f in WHOLEBODY_PARTS) or not isinstance(kps, list):
        return kps
    flat = list(kps)
    for field, (n, valid) in WHOLEBODY_PARTS.items():
        part = ann.get(field)
        if part is None or ann.get(valid) is False:
            part = [0.0] * (3 * n)  # absent or flagged invalid: not drawn
        if not isinstance(part, list) or len(part) != 3 * n:
            got = len(part) if isinstance(part, list) else type(part).__name__
            raise BadInput("bad_annotation", f"annotation {aid}: {field} must be {n}×(x, y, v) numbers, got {got}")
        flat += part
    return flat


class CocoSource(Source):
    name = "coco"
    Options = CocoOptions

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        index = load_index(self.options.annotations)
        entries = [[iid, index.images[iid]["file_name"]] for iid in sorted(index.images)]
        units: list[dict[str, Any]] = [{"images": part} for part in chunk(entries, items_per_unit)] or [{"images": []}]
        if index.bad_entries:
            units[0]["bad_entries"] = [list(e) for e in index.bad_entries]
        return units

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        try:
            index = load_index(self.options.annotations)
        except ConfigError as err:  # the files changed since planning: fail this unit's items
            for iid, _ in payload["images"]:
                yield Failed(str(iid), f"bad_json: {err}")
            return
        for pseudo_id, reason in payload.get("bad_entries", []):
            yield Failed(pseudo_id, reason)
        root = self.options.images_dir
        for iid, file_name in payload["images"]:
            item_id = str(iid)
            try:
                yield self._item(index, int(iid), root, file_name)
            except BadInput as err:
                yield Failed(item_id, str(err))

    def _item(self, index: CocoIndex, iid: int, root: str, file_name: str) -> Item:
        info = index.images.get(iid)
        if info is None:
            raise BadInput("bad_json", f"image {iid} no longer in the annotation files")
        width, height = info.get("width"), info.get("height")
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            raise BadInput("bad_annotation", f"image {iid}: width/height {width!r}x{height!r} missing or not positive")
        objects = [parse_object(a, width, height, index.categories, self.options.keypoint_format,
                                index.category_keypoints, self.options.outside) for a in index.by_image.get(iid, [])]
        data = read_bytes(join(root, file_name))
        return Item(item_id=str(iid), source=self.ctx.dataset, images=[data],
                    annotations={"width": width, "height": height, "objects": objects},
                    provenance={"coco_image_id": iid, "file_name": file_name})
