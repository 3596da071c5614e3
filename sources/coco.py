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
a non-finite or short bbox, a visible keypoint outside the image, an unknown category id, an
`iscrowd` not 0/1, a segmentation that is neither polygons nor RLE or a keypoint array that is
not K×3 for its format fails the whole image (`bad_annotation: ...`): a half-annotated image
would teach the model to miss objects. A `file_name` is resolved under `images_dir`
(`..`, absolute paths, symlinks out, non-UTF-8 names: `bad_path`); a missing photo fails as
`io: ...`, a FIFO or device as `not_a_file`.

The files are parsed once, on the driver, at plan time (each under `max_annotation_bytes`);
every unit's payload carries its images' own records (annotations as compact JSON text), so a
worker holds its unit's share of the annotations, never the whole file. Every entry the files
list ends in the audit exactly once: an image id listed a second time (`duplicate: ...`), an
image entry without an integer `id` and a `file_name`, an annotation of no listed image
(`bad_json: ...`) each get a row of their own. A file that cannot be used (not JSON, truncated,
no `images` list, `annotations` not a list) is one `bad_file` row, named, and the other files
are built; when no file is usable `plan()` raises a ConfigError naming them (exit 2).
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field, field_validator

from sources.annotation_json import (MAX_ANNOTATION_BYTES, bad_file_entry, contained, file_labels, is_int,
                                     read_json)
from sources.remote import read_bytes
from uvd.api import Source
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.keypoint_formats import NUM_KEYPOINTS, FormatOption, detect_format, undetected_reason
from uvd.records import Failed, Item

logger = logging.getLogger(__name__)

class CocoOptions(Strict):
    annotations: list[str]  # COCO JSON files (instances, person_keypoints, ...), merged by image id
    images_dir: str  # `file_name` of each image is relative to this folder
    # The keypoints' format (uvd/keypoint_formats.py); auto: from each category's keypoint names/count.
    keypoint_format: FormatOption = "auto"
    # Annotations reaching past the image: refuse the image (COCO's rule), or clip: a box is cut to
    # the frame (one wholly outside is still refused) and a point outside counts as unlabelled.
    # PoseTrack18 needs clip: its boxes have a margin and its head tops leave the frame.
    outside: Literal["refuse", "clip"] = "refuse"
    max_annotation_bytes: int = Field(MAX_ANNOTATION_BYTES, ge=1)  # per annotation file, read whole
    # the cap decides only which files are usable: that shows in every unit's payload
    operational_keys = frozenset({"max_annotation_bytes"})

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


# The annotation fields parse_object reads: only these travel in the payloads.
_ANN_FIELDS = ("id", "image_id", "category_id", "bbox", "iscrowd", "segmentation", "keypoints")


def _load_json(path: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> dict[str, Any]:
    data = read_json(path, "coco", max_bytes)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"coco: {path} has no `images` list: not a COCO annotation file")
    for key in ("annotations", "categories"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise ConfigError(f"coco: {path}: `{key}` is a {type(data[key]).__name__}, not a list")
    return data


class CocoIndex:
    """The parsed annotation files: images by id, annotations grouped by image id, categories,
    and a row for every entry that belongs to no readable image."""

    def __init__(self, paths: list[str], max_bytes: int = MAX_ANNOTATION_BYTES) -> None:
        self.images: dict[int, dict[str, Any]] = {}
        self.categories: dict[int, str] = {}
        self.category_keypoints: dict[int, list[str]] = {}  # the category's `keypoints` names, when given
        # Entries that belong to no image we can read: audited under a pseudo id, never dropped.
        self.bad_entries: list[tuple[str, str]] = []
        self.bad_files: list[tuple[str, str]] = []  # (label, why): one `bad_file` row each
        self.problems: dict[int, str] = {}  # image id → why the whole image fails
        labels = file_labels(paths)
        anns: dict[tuple[int, ...], dict[str, Any]] = {}
        usable = 0
        for fi, path in enumerate(paths):
            name = labels[path]
            try:
                data = _load_json(path, max_bytes)
            except ConfigError as err:
                logger.warning("coco: skipping annotation file %s: %s", path, err)
                self.bad_files.append((name, str(err)))
                continue
            usable += 1
            for cat in data.get("categories") or []:
                if isinstance(cat, dict) and is_int(cat.get("id")):
                    self.categories[cat["id"]] = str(cat.get("name", cat["id"]))
                    if isinstance(cat.get("keypoints"), list) and cat["keypoints"]:
                        self.category_keypoints[cat["id"]] = [str(n) for n in cat["keypoints"]]
            self._add_images(data["images"], name)
            seen_here: set[int] = set()
            for i, ann in enumerate(data.get("annotations") or []):
                if not isinstance(ann, dict) or not is_int(ann.get("image_id")):
                    self.bad_entries.append((f"{name}:annotations[{i}]", "bad_json: annotation without an integer `image_id`"))
                    continue
                aid = ann.get("id")
                key = (0, aid) if is_int(aid) else (1, fi, i)
                if is_int(aid) and aid in seen_here:  # one file naming an id twice: which one is meant?
                    self._fail_image(ann["image_id"], f"bad_annotation: annotation id {aid} listed twice in {name}")
                    if key in anns:
                        self._fail_image(anns[key]["image_id"], f"bad_annotation: annotation id {aid} listed twice in {name}")
                    continue
                if is_int(aid):
                    seen_here.add(aid)
                merged = anns.setdefault(key, {})
                if merged.get("image_id", ann["image_id"]) != ann["image_id"]:
                    why = f"bad_annotation: annotation id {aid} belongs to images {merged['image_id']} and {ann['image_id']}"
                    self._fail_image(merged["image_id"], why)
                    self._fail_image(ann["image_id"], why)
                    continue
                merged.update({k: v for k, v in ann.items() if v is not None and (k in _ANN_FIELDS or k in _WB_FIELDS)})
            del data
        if not usable:
            raise ConfigError("coco: no usable annotation file: " + "; ".join(why for _, why in self.bad_files))
        self.by_image: dict[int, list[dict[str, Any]]] = {}
        for key in sorted(anns):
            iid = anns[key]["image_id"]
            if iid not in self.images:
                label = f"annotation:{key[1]}" if key[0] == 0 else f"{labels[paths[key[1]]]}:annotations[{key[2]}]"
                self.bad_entries.append((label, f"bad_json: annotation {label} refers to unknown image_id {iid}"))
                continue
            self.by_image.setdefault(iid, []).append(anns[key])

    def _add_images(self, images: list[Any], name: str) -> None:
        first_here: dict[int, int] = {}
        for i, img in enumerate(images):
            pseudo = f"{name}:images[{i}]"
            if not isinstance(img, dict) or not is_int(img.get("id")) or not isinstance(img.get("file_name"), str):
                self.bad_entries.append((pseudo, "bad_json: image entry without an integer `id` and a `file_name`"))
                continue
            iid = img["id"]
            if iid in first_here:
                self.bad_entries.append((pseudo, f"duplicate: image id {iid} listed again in {name} "
                                                 f"(first at images[{first_here[iid]}])"))
                continue
            first_here[iid] = i
            known = self.images.get(iid)
            if known is not None and known["file_name"] != img["file_name"]:  # same id, another photo
                self.bad_entries.append((pseudo, f"duplicate: image id {iid} in {name} names {img['file_name']!r}, "
                                                 f"another file listed it as {known['file_name']!r}"))
                continue
            if known is None:
                self.images[iid] = {"file_name": img["file_name"], "width": img.get("width"), "height": img.get("height")}

    def _fail_image(self, iid: int, why: str) -> None:
        self.problems.setdefault(iid, why)


def _finite(values: Any) -> bool:
    # float(10**400) overflows: such an integer is no coordinate either
    try:
        return isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    except OverflowError:
        return False


def _check_segmentation(seg: Any, aid: Any) -> Any:
    """Polygons (lists of numbers) or RLE ({"size": [h, w], "counts": str | [int]}); the renderer
    checks the rest (bad_mask). Anything else is refused here, by name."""
    if not seg:
        return None
    if isinstance(seg, list) and all(_finite(p) for p in seg):
        return seg
    if (isinstance(seg, dict) and isinstance(seg.get("size"), list) and len(seg["size"]) == 2
            and all(is_int(v) for v in seg["size"]) and isinstance(seg.get("counts"), (str, list))):
        return seg
    raise BadInput("bad_annotation", f"annotation {aid}: segmentation is neither polygons nor RLE "
                                     f"({type(seg).__name__})")


def parse_object(ann: dict[str, Any], width: int, height: int, categories: dict[int, str],
                 keypoint_format: str = "auto", category_keypoints: dict[int, list[str]] | None = None,
                 outside: str = "refuse", strict_categories: bool | None = None) -> dict[str, Any]:
    """One COCO annotation → a checked object in original pixel coordinates; BadInput when bad.
    `strict_categories` (default: whether `categories` is non-empty) refuses a category id not in it."""
    aid = ann.get("id", "?")
    cid = ann.get("category_id")
    strict = bool(categories) if strict_categories is None else strict_categories
    if not is_int(cid) or (strict and cid not in categories):
        raise BadInput("bad_annotation", f"annotation {aid}: unknown category_id {cid!r}")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd is None:
        iscrowd = 0
    if not isinstance(iscrowd, (int, bool)) or int(iscrowd) not in (0, 1):
        raise BadInput("bad_annotation", f"annotation {aid}: iscrowd {iscrowd!r} is not 0 or 1")
    obj: dict[str, Any] = {"id": aid, "category_id": cid, "category": categories.get(cid, str(cid)),
                           "iscrowd": int(iscrowd), "bbox": None,
                           "segmentation": _check_segmentation(ann.get("segmentation"), aid), "keypoints": None,
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
_WB_FIELDS = frozenset(WHOLEBODY_PARTS) | {valid for _, valid in WHOLEBODY_PARTS.values()}


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


def _unit_categories(index: CocoIndex, used: list[set[int]]) -> list[list[Any]]:
    """[id, name, keypoint names | None] of the known categories a unit's annotations name."""
    ids = sorted(set().union(*used) & set(index.categories)) if used else []
    return [[c, index.categories[c], index.category_keypoints.get(c)] for c in ids]


class CocoSource(Source):
    name = "coco"
    Options = CocoOptions
    item_key = "images"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        index = CocoIndex(self.options.annotations, self.options.max_annotation_bytes)
        records, used = [], []
        for iid in sorted(index.images):
            info, anns = index.images[iid], index.by_image.get(iid, [])
            # one string per image: a unit's payload costs about its share of the file, not 8× it
            records.append([iid, info["file_name"], info["width"], info["height"],
                            json.dumps(anns, separators=(",", ":")), index.problems.get(iid)])
            used.append({a["category_id"] for a in anns if is_int(a.get("category_id"))})
        del index.by_image
        strict = bool(index.categories)
        units: list[dict[str, Any]] = [
            {"images": records[i:i + items_per_unit], "categories": _unit_categories(index, used[i:i + items_per_unit]),
             "strict_categories": strict}
            for i in range(0, len(records), items_per_unit)] or [{"images": []}]
        if index.bad_entries:
            units[0]["bad_entries"] = [list(e) for e in index.bad_entries]
        units += [{"images": [], "bad_entries": [bad_file_entry(label, why)]} for label, why in index.bad_files]
        return units

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload.get("images", [])) + len(payload.get("bad_entries", []))

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for pseudo_id, reason in payload.get("bad_entries", []):
            yield Failed(pseudo_id, reason)
        categories = {c[0]: c[1] for c in payload.get("categories", [])}
        keypoint_names = {c[0]: c[2] for c in payload.get("categories", []) if c[2]}
        strict = bool(payload.get("strict_categories", False))
        for record in payload["images"]:
            try:
                yield self._item(record, categories, keypoint_names, strict)
            except Exception as err:  # one bad value fails its image, never the unit
                yield Failed(str(record[0]), reason_of(err))

    def _item(self, record: list[Any], categories: dict[int, str], keypoint_names: dict[int, list[str]],
              strict: bool) -> Item:
        iid, file_name, width, height, anns_json, problem = record
        if problem:
            raise BadInput(*problem.split(": ", 1))
        if not is_int(width) or not is_int(height) or width <= 0 or height <= 0:
            raise BadInput("bad_annotation", f"image {iid}: width/height {width!r}x{height!r} missing or not positive")
        objects = [parse_object(a, width, height, categories, self.options.keypoint_format, keypoint_names,
                                self.options.outside, strict) for a in json.loads(anns_json)]
        data = read_bytes(contained(self.options.images_dir, file_name))
        return Item(item_id=str(iid), source=self.ctx.dataset, images=[data],
                    annotations={"width": width, "height": height, "objects": objects},
                    provenance={"coco_image_id": iid, "file_name": file_name})
