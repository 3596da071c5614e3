"""Pose targets: human skeletons in the OpenPose 18-keypoint format, drawn as MMPose draws them.

The keypoint names, skeleton links and colours below are MMPose's `coco_openpose` dataset
info, copied from open-mmlab/mmpose v1.3.2, configs/_base_/datasets/coco_openpose.py
(Copyright (c) OpenMMLab, Apache License 2.0). A test compares this table with that file
whenever mmpose is importable. The drawing follows MMPose's
`PoseLocalVisualizer._draw_instances_kpts_openpose`:

- COCO's 17 keypoints become OpenPose's 18: the neck is the mean of the two shoulders and
  counts as visible only when both shoulders are; the rest are reordered (`COCO_TO_OPENPOSE`).
- a keypoint is drawn when its visibility is > 0 (COCO v=1 "labelled, occluded" and v=2
  "visible" both, as MMPose's loader maps v to min(1, v)); v=0 keypoints and every link
  touching one are skipped.
- each link is a filled ellipse along the segment (semi-minor axis `line_width`), blended with
  alpha 0.6; then each keypoint a filled disc of `radius`, opaque. Everything on black.

Differences, on purpose: MMPose skips a link whose end lies outside the canvas; we draw it
clipped, because our canvas is a centre crop of the photo and a limb leaving the crop is
still in the picture (keypoints outside the *original* image are refused by the source).
Line width and radius scale with the canvas (MMPose's are fixed pixels).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# --- MMPose coco_openpose dataset_info (Apache-2.0, see above) -------------------------------
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)
KEYPOINT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
SKELETON: tuple[tuple[str, str], ...] = (
    ("neck", "right_shoulder"), ("neck", "left_shoulder"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("neck", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("neck", "nose"), ("nose", "right_eye"), ("right_eye", "right_ear"), ("nose", "left_eye"),
    ("left_eye", "left_ear"),
)
LINK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 225), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255), (255, 0, 170),
)
# ----------------------------------------------------------------------------------------------

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# OpenPose index -> COCO index (-1: the neck, derived from the shoulders).
COCO_TO_OPENPOSE: tuple[int, ...] = tuple(
    -1 if name == "neck" else COCO_KEYPOINT_NAMES.index(name) for name in KEYPOINT_NAMES
)
LINKS: tuple[tuple[int, int], ...] = tuple(
    (KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)) for a, b in SKELETON
)


def coco_to_openpose(keypoints: np.ndarray) -> np.ndarray:
    """(P, 17, 3) COCO keypoints (x, y, v) → (P, 18, 3) OpenPose order with the neck; v ∈ {0, 1}."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 17, 3)
    visible = (kp[..., 2] > 0).astype(np.float64)
    out = np.zeros((kp.shape[0], 18, 3), np.float64)
    for op, coco in enumerate(COCO_TO_OPENPOSE):
        if coco >= 0:
            out[:, op, :2] = kp[:, coco, :2]
            out[:, op, 2] = visible[:, coco]
    ls, rs = COCO_KEYPOINT_NAMES.index("left_shoulder"), COCO_KEYPOINT_NAMES.index("right_shoulder")
    neck = KEYPOINT_NAMES.index("neck")
    out[:, neck, :2] = (kp[:, ls, :2] + kp[:, rs, :2]) / 2
    out[:, neck, 2] = visible[:, ls] * visible[:, rs]
    return out


def pose_line_width(height: int, width: int) -> int:
    """Semi-minor axis of a limb ellipse: 2 px on 256×256 (a 4–5 px wide limb)."""
    return max(1, int(round(min(height, width) / 128)))


def pose_radius(height: int, width: int) -> int:
    return max(1, int(round(min(height, width) / 64)))


def render_pose(keypoints: np.ndarray, height: int, width: int,
                line_width: int | None = None, radius: int | None = None) -> np.ndarray:
    """Skeletons of P people on a black height×width RGB canvas.

    `keypoints`: (P, 17, 3) COCO keypoints (x, y, visibility) already in canvas pixel
    coordinates (map them with `uvd.image.fit_transform(...).points` first).
    """
    lw = line_width or pose_line_width(height, width)
    r = radius or pose_radius(height, width)
    canvas = np.zeros((height, width, 3), np.uint8)
    people = coco_to_openpose(keypoints)
    for person in people:
        for (a, b), color in zip(LINKS, LINK_COLORS):
            if person[a, 2] < 1 or person[b, 2] < 1:
                continue
            (x1, y1), (x2, y2) = person[a, :2], person[b, :2]
            # MMPose truncates to int before measuring; we round, the difference is sub-pixel.
            length = math.hypot(x1 - x2, y1 - y2)
            angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
            poly = cv2.ellipse2Poly((int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2))),
                                    (int(length / 2), lw), int(angle), 0, 360, 1)
            # Blend only inside the limb's bounding box: a full-canvas mask per link costs more than the limb.
            x0, y0 = np.maximum(poly.min(axis=0), 0)
            x1, y1 = np.minimum(poly.max(axis=0) + 1, (width, height))
            if x0 >= x1 or y0 >= y1:
                continue
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillConvexPoly(mask, poly - (x0, y0), 1)
            inside = mask.astype(bool)
            roi = canvas[y0:y1, x0:x1]
            # MMPose's link alpha 0.6, blended as 3/5 in integers so the bytes never depend on float rounding.
            roi[inside] = ((3 * np.asarray(color, np.uint16) + 2 * roi[inside].astype(np.uint16) + 2) // 5).astype(np.uint8)
        for k in range(18):
            if person[k, 2] < 1:
                continue
            centre = (int(round(person[k, 0])), int(round(person[k, 1])))
            cv2.circle(canvas, centre, r, KEYPOINT_COLORS[k], thickness=-1)
    return canvas
