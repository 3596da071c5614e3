"""Hostile annotation inputs for tests (issue #23, part B): small real files (JPEG, PNG, .npy,
COCO / MPII / PoseTrack JSON) with one bad value put into one field, beside good ones that must
still build. Each case is (name, how to spoil the data, the audit reason kind expected)."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from uvd.keypoint_formats import NAMES

W, H = 64, 48


def write_jpeg(path: Path, w: int = W, h: int = H, grey: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), grey, np.uint8))
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)
    return path


def write_fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


# --- COCO --------------------------------------------------------------------------------------

def coco_data() -> dict[str, Any]:
    """Two good images (ids 1 and 2), one person each with a box, 17 keypoints and a polygon."""
    kps = [10.0, 10.0, 2.0] * 17
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                   {"id": 2, "file_name": "b.jpg", "width": W, "height": H}],
        "annotations": [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0,
                         "segmentation": [[5, 5, 25, 5, 25, 25]], "keypoints": list(kps)},
                        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0,
                         "segmentation": [[5, 5, 25, 5, 25, 25]], "keypoints": list(kps)}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(NAMES["coco"])}],
    }


def write_coco(root: Path, data: dict[str, Any], name: str = "ann.json") -> tuple[Path, Path]:
    """<root>/images/{a,b}.jpg, <root>/outside/secret.jpg (a good photo outside the images folder:
    reading it would turn an escape into a sentence) and the JSON; returns (json, images_dir)."""
    images = root / "images"
    for n in ("a.jpg", "b.jpg"):
        if not (images / n).exists():
            write_jpeg(images / n)
    write_jpeg(root / "outside" / "secret.jpg")
    p = root / name
    p.write_text(json.dumps(data))  # ensure_ascii: a lone surrogate stays a JSON escape
    return p, images


def _ann(field: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    def spoil(data: dict[str, Any], root: Path) -> None:
        data["annotations"][0][field] = value
    return spoil


def _img(field: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    def spoil(data: dict[str, Any], root: Path) -> None:
        data["images"][0][field] = value
    return spoil


def _symlink_out(data: dict[str, Any], root: Path) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    write_jpeg(root / "outside" / "secret.jpg")
    os.symlink(root / "outside" / "secret.jpg", root / "images" / "link.jpg")
    data["images"][0]["file_name"] = "link.jpg"


def _fifo(data: dict[str, Any], root: Path) -> None:
    write_fifo(root / "images" / "pipe.jpg")
    data["images"][0]["file_name"] = "pipe.jpg"


def _folder(data: dict[str, Any], root: Path) -> None:
    (root / "images" / "dir.jpg").mkdir(parents=True)
    data["images"][0]["file_name"] = "dir.jpg"


def _encoded(data: dict[str, Any], root: Path) -> None:
    # `%2e%2e` is a literal name on a local disk, not `..`: it must not reach outside/secret.jpg
    data["images"][0]["file_name"] = "%2e%2e/outside/secret.jpg"


# (case, spoil image 1 of coco_data(), expected reason kind of image 1; `a|b`: either)
COCO_FIELD_CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], str]] = [
    ("iscrowd_yes", _ann("iscrowd", "yes"), "bad_annotation"),
    ("iscrowd_7", _ann("iscrowd", 7), "bad_annotation"),
    ("bbox_strings", _ann("bbox", ["5", "5", "20", "20"]), "bad_annotation"),
    ("bbox_short", _ann("bbox", [5, 5, 20]), "bad_annotation"),
    ("bbox_infinite", _ann("bbox", [5, 5, float("inf"), 20]), "bad_annotation"),
    ("bbox_huge_int", _ann("bbox", [5, 5, 10 ** 400, 20]), "bad_annotation"),
    ("bbox_object", _ann("bbox", {"x": 1}), "bad_annotation"),
    ("keypoints_int", _ann("keypoints", 5), "bad_annotation"),
    ("keypoints_wrong_length", _ann("keypoints", [10.0] * 50), "bad_annotation"),
    ("keypoints_strings", _ann("keypoints", ["10"] * 51), "bad_annotation"),
    ("keypoints_nested", _ann("keypoints", [[10, 10, 2]] * 17), "bad_annotation"),
    ("wholebody_part_garbage", _ann("foot_kpts", "feet"), "bad_annotation"),
    ("category_unknown", _ann("category_id", 99), "bad_annotation"),
    ("category_string", _ann("category_id", "1"), "bad_annotation"),
    ("category_bool", _ann("category_id", True), "bad_annotation"),
    ("segmentation_string", _ann("segmentation", "garbage"), "bad_annotation"),
    ("segmentation_nested_strings", _ann("segmentation", [["a", "b"]]), "bad_annotation"),
    ("segmentation_rle_without_counts", _ann("segmentation", {"size": [H, W]}), "bad_annotation"),
    ("segmentation_number", _ann("segmentation", 12), "bad_annotation"),
    ("width_string", _img("width", "wide"), "bad_annotation"),
    ("width_bool", _img("width", True), "bad_annotation"),
    ("height_negative", _img("height", -3), "bad_annotation"),
    ("height_missing", _img("height", None), "bad_annotation"),
    ("file_name_dotdot", _img("file_name", "../outside/secret.jpg"), "bad_path"),
    ("file_name_absolute", _img("file_name", "/etc/passwd"), "bad_path"),
    ("file_name_dev_zero", _img("file_name", "/dev/zero"), "bad_path"),
    ("file_name_url", _img("file_name", "file:///etc/passwd"), "bad_path"),
    ("file_name_not_utf8", _img("file_name", "\udcff.jpg"), "bad_path"),
    ("file_name_nul", _img("file_name", "a.jpg\x00.png"), "bad_path"),
    ("file_name_symlink_out", _symlink_out, "bad_path"),
    ("file_name_encoded_dotdot", _encoded, "io"),
    ("file_name_fifo", _fifo, "not_a_file"),
    # a folder: sources/remote.read_bytes says `io: ... Is a directory` today (docs want not_a_file)
    ("file_name_folder", _folder, "not_a_file|io"),
    ("file_name_missing", _img("file_name", "nope.jpg"), "io"),
]

# Entries that are no image the source can read: each still gets its own row (a pseudo id).
COCO_ENTRY_CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], str, str]] = [
    ("image_id_string", _img("id", "1"), "ann.json:images[0]", "bad_json"),
    ("image_id_list", _img("id", [1]), "ann.json:images[0]", "bad_json"),
    ("file_name_int", _img("file_name", 5), "ann.json:images[0]", "bad_json"),
    ("annotation_image_id_list", _ann("image_id", [1]), "ann.json:annotations[0]", "bad_json"),
    ("annotation_unknown_image", _ann("image_id", 77), "annotation:11", "bad_json"),
]

# Whole annotation files that cannot be planned: (case, file content as bytes).
COCO_BAD_FILES: list[tuple[str, bytes]] = [
    ("annotations_int", json.dumps({"images": [], "annotations": 5}).encode()),
    ("categories_string", json.dumps({"images": [], "categories": "person"}).encode()),
    ("no_images", json.dumps({"annotations": []}).encode()),
    ("not_json", b"this is not json"),
    ("truncated", json.dumps(coco_data()).encode()[:100]),
    ("empty", b""),
    ("list", b"[1, 2]"),
    ("not_utf8", b'{"images": [], "x": "\xff\xfe"}'),
    ("nested_deep", b"[" * 100_000 + b"]" * 100_000),
]


def spoiled_coco(root: Path, spoil: Callable[[dict[str, Any], Path], None]) -> tuple[Path, Path]:
    data = copy.deepcopy(coco_data())
    root.mkdir(parents=True, exist_ok=True)
    spoil(data, root)
    return write_coco(root, data)


# --- MPII (MMPose's layout) -------------------------------------------------------------------

def mpii_people() -> list[dict[str, Any]]:
    joints = [[10.0 + j, 20.0] for j in range(16)]
    return [{"image": "a.jpg", "joints": joints, "joints_vis": [1] * 16, "center": [30, 30], "scale": 1.0},
            {"image": "b.jpg", "joints": copy.deepcopy(joints), "joints_vis": [1] * 16, "center": [30, 30],
             "scale": 1.0}]


def _person(field: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def spoil(people: list[dict[str, Any]]) -> None:
        people[0][field] = value
    return spoil


MPII_FIELD_CASES: list[tuple[str, Callable[[list[dict[str, Any]]], None], str]] = [
    ("joints_short", _person("joints", [[1, 2]] * 15), "bad_annotation"),
    ("joints_strings", _person("joints", [["1", "2"]] * 16), "bad_annotation"),
    ("joints_int", _person("joints", 5), "bad_annotation"),
    ("joints_bool", _person("joints", [[True, False]] * 16), "bad_annotation"),
    ("joints_huge_int", _person("joints", [[10 ** 400, 2]] * 16), "bad_annotation"),
    ("joints_vis_two", _person("joints_vis", [2] * 16), "bad_annotation"),
    ("joints_vis_missing", _person("joints_vis", None), "bad_annotation"),
    ("joint_outside", _person("joints", [[500.0, 20.0]] * 16), "bad_annotation"),
    ("image_dotdot", _person("image", "../outside/secret.jpg"), "bad_path"),
    ("image_absolute", _person("image", "/etc/passwd"), "bad_path"),
    ("image_not_utf8", _person("image", "\udcff.jpg"), "bad_path"),
    ("image_missing", _person("image", "nope.jpg"), "io"),
]


def write_mpii(root: Path, people: list[dict[str, Any]]) -> tuple[Path, Path]:
    images = root / "images"
    for n in ("a.jpg", "b.jpg"):
        write_jpeg(images / n)
    write_jpeg(root / "outside" / "secret.jpg")
    p = root / "mpii.json"
    p.write_text(json.dumps(people))
    return p, images


# --- PoseTrack (pose_video) -------------------------------------------------------------------

def _all(key: str, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def spoil(data: dict[str, Any]) -> None:
        for entry in data[key]:
            entry[field] = copy.deepcopy(value)
    return spoil


def _first_image(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def spoil(data: dict[str, Any]) -> None:
        data["images"][0][field] = value
    return spoil


def _mixed_track_ids(data: dict[str, Any]) -> None:
    for i, ann in enumerate(data["annotations"]):
        ann["track_id"] = "a" if i % 2 else 0


def _image_not_object(data: dict[str, Any]) -> None:
    data["images"].append(5)


# (case, spoil video 000042's JSON, its expected reason kind or "ok", a pseudo id prefix that must
# have a row of its own or None)
POSE_FIELD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str | None]] = [
    ("width_string", _first_image("width", "wide"), "bad_annotation", None),
    ("height_list", _first_image("height", [240]), "bad_annotation", None),
    ("frame_id_mixed", _first_image("frame_id", "0"), "bad_annotation", None),
    ("frame_id_list", _all("images", "frame_id", [1]), "bad_annotation", None),
    ("image_id_of_frame_list", _first_image("id", [1]), "bad_annotation", None),
    ("file_name_int", _all("images", "file_name", 5), "bad_annotation", None),
    ("file_name_dotdot", _all("images", "file_name", "../outside/secret.jpg"), "bad_path", None),
    ("file_name_absolute", _all("images", "file_name", "/etc/passwd"), "bad_path", None),
    ("keypoints_int", _all("annotations", "keypoints", 5), "bad_annotation", None),
    ("keypoints_strings", _all("annotations", "keypoints", ["1"] * 51), "bad_annotation", None),
    ("keypoints_visibility_5", _all("annotations", "keypoints", [10, 10, 5] * 17), "bad_annotation", None),
    ("track_id_mixed_types", _mixed_track_ids, "ok", None),
    ("annotation_image_id_list", _all("annotations", "image_id", [1]), "ok", "000042_mpii_train.json:annotations["),
    ("image_entry_not_object", _image_not_object, "ok", "000042_mpii_train.json:images["),
]
