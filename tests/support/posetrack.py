"""A PoseTrack18-layout video for tests: N frames whose grey level encodes the frame number,
and one person walking right, with per-frame COCO-style keypoints (PoseTrack18's 17 names)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from uvd.keypoint_formats import NAMES

W, H = 320, 240
# A standing person (x, y) around (0, 0); PoseTrack18's order: nose, head_bottom, head_top, ears, ...
BODY = {"nose": (0, -70), "head_bottom": (0, -55), "head_top": (0, -95), "left_ear": (8, -75), "right_ear": (-8, -75),
        "left_shoulder": (20, -45), "right_shoulder": (-20, -45), "left_elbow": (28, -15), "right_elbow": (-28, -15),
        "left_wrist": (30, 10), "right_wrist": (-30, 10), "left_hip": (12, 10), "right_hip": (-12, 10),
        "left_knee": (14, 45), "right_knee": (-14, 45), "left_ankle": (15, 80), "right_ankle": (-15, 80)}


def person_at(frame: int) -> np.ndarray:
    """(17, 3) keypoints of the person in `frame`: 8 px further right each frame, all labelled."""
    cx, cy = 60 + 8 * frame, 130
    return np.array([(cx + BODY[n][0], cy + BODY[n][1], 2) for n in NAMES["posetrack18"]], np.float64)


def frame_grey(frame: int) -> int:
    return 20 + 9 * frame


def write_posetrack_video(root: Path, video: str = "000042_mpii_train", frames: int = 12,
                          labelled: range | None = None, official: bool = False) -> Path:
    """<root>/images/train/<video>/NNNNNN.jpg and <root>/annotations/train/<video>.json; returns the JSON folder.

    `official`: image entries without `width`/`height`, as in the PoseTrack18 release (only MMPose's
    converted copies carry them)."""
    labelled = labelled if labelled is not None else range(frames)
    img_dir = root / "images" / "train" / video
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for f in range(frames):
        img = np.full((H, W, 3), frame_grey(f), np.uint8)
        cv2.imwrite(str(img_dir / f"{f:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        iid = int(f"1{video[:6]}{f:04d}")
        images.append({"has_no_densepose": True, "is_labeled": f in labelled, "file_name": f"images/train/{video}/{f:06d}.jpg",
                       "nframes": frames, "frame_id": iid, "vid_id": video[:6], "id": iid,
                       **({} if official else {"width": W, "height": H})})
        if f in labelled:
            kp = person_at(f)
            anns.append({"bbox_head": [0, 0, 1, 1], "keypoints": kp.reshape(-1).tolist(), "track_id": 0, "image_id": iid,
                         "bbox": [float(kp[:, 0].min()), float(kp[:, 1].min()), 60.0, 175.0], "scores": [],
                         "category_id": 1, "id": iid * 100, "iscrowd": False, "num_keypoints": 17})
    cat = {"supercategory": "person", "id": 1, "name": "person", "keypoints": list(NAMES["posetrack18"]), "skeleton": []}
    out = root / "annotations" / "train"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{video}.json").write_text(json.dumps({"categories": [cat], "images": images, "annotations": anns}))
    return out
