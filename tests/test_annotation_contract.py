"""Every source writes only the annotation keys uvd/annotations.py declares, with the declared types."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import SAMPLES
from support.posetrack import write_posetrack_video
from uvd.annotations import KEYS, OBJECT_KEYS, unknown_keys
from uvd.config import BuildConfig
from uvd.keypoint_formats import FORMATS, NUM_KEYPOINTS
from uvd.records import Item
from uvd.unit import make_source


def _items(source: str, args: dict) -> list[Item]:
    cfg = BuildConfig.model_validate({"datasets": [{"name": "d", "source": source, "source_args": args, "builder": "single"}]})
    src = make_source(cfg, cfg.datasets[0])
    try:
        out = [it for p in src.plan(100) for it in src.read(p)]
    finally:
        src.close()
    items = [it for it in out if isinstance(it, Item)]
    assert items, (source, out)
    return items


def _check(items: list[Item]) -> set[str]:
    seen: set[str] = set()
    for it in items:
        ann = it.annotations
        assert unknown_keys(ann) == [], (it.source, it.item_id)
        seen |= set(ann)
        for o in ann.get("objects", []):
            assert set(o) <= OBJECT_KEYS, set(o) - OBJECT_KEYS
            if o.get("keypoints") is not None:
                assert o["keypoint_format"] in FORMATS
                assert o["keypoints"].shape == (NUM_KEYPOINTS[o["keypoint_format"]], 3)
        for kp in ann.get("keypoints_per_frame", []):
            assert kp.ndim == 3 and kp.shape[1:] == (NUM_KEYPOINTS[ann["keypoint_format"]], 3)
        for c in ann.get("clips", []):
            assert set(c) == {"stride", "requested_stride", "start", "indices"}
        if "frame_indices" in ann:
            assert len(ann["frame_indices"]) == len(it.images)
    return seen


def test_every_source_keeps_to_the_contract(tmp_path: Path) -> None:
    pose = SAMPLES / "pose"
    seen = _check(_items("coco", {"annotations": str(pose / "coco_wholebody/test_coco_wholebody.json"),
                                  "images_dir": str(SAMPLES / "coco")}))
    seen |= _check(_items("coco", {"annotations": str(SAMPLES / "coco/test_coco.json"), "images_dir": str(SAMPLES / "coco")}))
    seen |= _check(_items("mpii", {"annotations": str(pose / "mpii/test_mpii.json"), "images_dir": str(pose / "mpii")}))
    ann = write_posetrack_video(tmp_path / "pt", frames=6)
    seen |= _check(_items("pose_video", {"root": str(tmp_path / "pt"), "annotations": str(ann), "frames_per_sentence": 3}))
    seen |= _check(_items("video", {"root": str(SAMPLES / "video"), "strides": [2], "clip_len": 4}))
    # dense maps and pairs, from small files made here
    for d in ("img", "lab", "dep", "x", "y"):
        (tmp_path / d).mkdir()
    photo = np.full((40, 60, 3), 120, np.uint8)
    for d in ("img", "x", "y"):
        cv2.imwrite(str(tmp_path / d / "a.png"), photo)
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), np.ones((40, 60), np.uint8))
    cv2.imwrite(str(tmp_path / "dep" / "a.png"), np.full((40, 60), 1500, np.uint16))
    seen |= _check(_items("segmentation", {"images": str(tmp_path / "img"), "labels": str(tmp_path / "lab")}))
    seen |= _check(_items("depth", {"images": str(tmp_path / "img"), "depth": str(tmp_path / "dep"), "fx": 50.0, "fy": 50.0}))
    seen |= _check(_items("paired", {"inputs": str(tmp_path / "x"), "targets": str(tmp_path / "y"), "task": "style"}))
    assert seen <= KEYS
    # the contract lists nothing no source writes: what these inputs did not reach is known
    # (annotated_video's masks are tested in test_video_annotated.py; normals need a normals folder)
    assert KEYS - seen == {"masks", "normals"}
    assert {"objects", "keypoints_per_frame", "keypoint_format", "label_map", "depth", "intrinsics", "paired_task",
            "clips", "frame_indices"} <= seen


def test_the_keypoint_format_option_lists_every_format_and_reads_go_through_the_contract() -> None:
    import typing

    import pytest

    from uvd.annotations import require
    from uvd.errors import BadInput
    from uvd.keypoint_formats import FormatOption

    assert set(typing.get_args(FormatOption)) == set(FORMATS) | {"auto"}
    assert require({"depth": 1}, "depth", "x") == 1
    with pytest.raises(BadInput, match="^no_annotation: item has no depth"):
        require({}, "depth", "use the depth source")
    with pytest.raises(KeyError, match="not an annotation key"):
        require({"dpeth": 1}, "dpeth", "typo")
