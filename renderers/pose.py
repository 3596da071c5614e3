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

Other formats (AI Challenger, CrowdPose, MPII, Halpe, OCHuman, PoseTrack18, COCO-WholeBody)
are first mapped onto MMPose's `coco_wholebody_openpose` layout (uvd/keypoint_formats.py);
what they add to the body is drawn as MMPose draws it: hand links as lines of `line_width`
in `HAND_LINK_COLORS`, hand points (blue) and face points (white) as discs of half the radius.
MMPose's table colours the six foot points black (= not drawn); we draw feet as OpenPose's
BODY_25 does (CMU openpose, include/openpose/pose/poseParametersRender.hpp: left foot blue,
right foot cyan, ankle→heel, ankle→big toe, big toe→small toe) with the body's limb ellipses.

Differences, on purpose: MMPose skips a link whose end lies outside the canvas; we draw it
clipped, because our canvas is a centre crop of the photo and a limb leaving the crop is
still in the picture (keypoints outside the *original* image are refused by the source).
Line width and radius scale with the canvas (MMPose's are fixed pixels).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from uvd.keypoint_formats import COCO17, FACE, FEET, LEFT_HAND, NUM_OPENPOSE, RIGHT_HAND, to_openpose

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

COCO_KEYPOINT_NAMES = COCO17
# OpenPose index -> COCO index (-1: the neck, derived from the shoulders).
COCO_TO_OPENPOSE: tuple[int, ...] = tuple(
    -1 if name == "neck" else COCO_KEYPOINT_NAMES.index(name) for name in KEYPOINT_NAMES
)
LINKS: tuple[tuple[int, int], ...] = tuple(
    (KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)) for a, b in SKELETON
)

# --- whole-body extras (coco_wholebody_openpose.py, MMPose 1.3.2; feet: OpenPose BODY_25) -------
# Hand links, per hand: root→thumb1…4, root→forefinger1…4, middle, ring, pinky (hand-local ids).
HAND_LINKS: tuple[tuple[int, int], ...] = tuple(
    (0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4))
LEFT_HAND_LINK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 76, 0), (255, 153, 0), (255, 230, 0), (204, 255, 0), (128, 255, 0), (51, 255, 0),
    (0, 255, 26), (0, 255, 102), (0, 255, 178), (0, 255, 255), (0, 178, 255), (0, 102, 255), (0, 26, 255),
    (51, 0, 255), (128, 0, 255), (204, 0, 255), (255, 0, 230), (255, 0, 153), (255, 0, 76),
)
# MMPose's right hand repeats the left's colours except middle_finger2→3, which it makes white.
RIGHT_HAND_LINK_COLORS = LEFT_HAND_LINK_COLORS[:10] + ((255, 255, 255),) + LEFT_HAND_LINK_COLORS[11:]
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
# OpenPose-134 ids: ankles 13 (left) / 10 (right); feet 18–20 left big toe, small toe, heel; 21–23 right.
FOOT_LINKS: tuple[tuple[int, int], ...] = ((13, 18), (18, 19), (13, 20), (10, 21), (21, 22), (10, 23))
FOOT_COLORS: tuple[tuple[int, int, int], ...] = ((0, 0, 255),) * 3 + ((0, 255, 255),) * 3


def coco_to_openpose(keypoints: np.ndarray) -> np.ndarray:
    """(P, 17, 3) COCO keypoints (x, y, v) → (P, 18, 3) OpenPose order with the neck; v ∈ {0, 1}."""
    return to_openpose(keypoints, "coco")[:, :18]


def pose_line_width(height: int, width: int) -> int:
    """Semi-minor axis of a limb ellipse: 2 px on 256×256 (a 4–5 px wide limb)."""
    return max(1, int(round(min(height, width) / 128)))


def pose_radius(height: int, width: int) -> int:
    return max(1, int(round(min(height, width) / 64)))


def _limb(canvas: np.ndarray, p1: np.ndarray, p2: np.ndarray, color: tuple[int, int, int], lw: int) -> None:
    """A filled ellipse along p1–p2, blended with alpha 3/5 (MMPose's body links)."""
    height, width = canvas.shape[:2]
    (x1, y1), (x2, y2) = p1, p2
    # MMPose truncates to int before measuring; we round, the difference is sub-pixel.
    length = math.hypot(x1 - x2, y1 - y2)
    angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
    poly = cv2.ellipse2Poly((int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2))),
                            (int(length / 2), lw), int(angle), 0, 360, 1)
    # Blend only inside the limb's bounding box: a full-canvas mask per link costs more than the limb.
    x0, y0 = np.maximum(poly.min(axis=0), 0)
    x1, y1 = np.minimum(poly.max(axis=0) + 1, (width, height))
    if x0 >= x1 or y0 >= y1:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, poly - (x0, y0), 1)
    inside = mask.astype(bool)
    roi = canvas[y0:y1, x0:x1]
    # Integer blend (alpha 0.6 = 3/5) so the bytes never depend on float rounding.
    roi[inside] = ((3 * np.asarray(color, np.uint16) + 2 * roi[inside].astype(np.uint16) + 2) // 5).astype(np.uint8)


def _point(person: np.ndarray, k: int) -> tuple[int, int]:
    return int(round(person[k, 0])), int(round(person[k, 1]))


def render_pose(keypoints: np.ndarray, height: int, width: int,
                line_width: int | None = None, radius: int | None = None,
                keypoint_format: str = "coco") -> np.ndarray:
    """Skeletons of P people on a black height×width RGB canvas.

    `keypoints`: (P, K, 3) keypoints (x, y, visibility) of `keypoint_format` (a name in
    uvd/keypoint_formats.py; COCO's 17 by default; "openpose": already `to_openpose`'s (P, 134, 3)),
    already in canvas pixel coordinates
    (map them with `uvd.image.fit_transform(...).points` first).
    """
    lw = line_width or pose_line_width(height, width)
    r = radius or pose_radius(height, width)
    small = max(1, r // 2)
    canvas = np.zeros((height, width, 3), np.uint8)
    people = (np.asarray(keypoints, np.float64).reshape(-1, NUM_OPENPOSE, 3) if keypoint_format == "openpose"
              else to_openpose(keypoints, keypoint_format))
    for person in people:
        for (a, b), color in zip(LINKS + FOOT_LINKS, LINK_COLORS + FOOT_COLORS):
            if person[a, 2] >= 1 and person[b, 2] >= 1:
                _limb(canvas, person[a, :2], person[b, :2], color, lw)
        for hand, colors in ((LEFT_HAND, LEFT_HAND_LINK_COLORS), (RIGHT_HAND, RIGHT_HAND_LINK_COLORS)):
            for (a, b), color in zip(HAND_LINKS, colors):
                a, b = hand[a], hand[b]
                if person[a, 2] >= 1 and person[b, 2] >= 1:
                    cv2.line(canvas, _point(person, a), _point(person, b), color, lw)
        for k in range(NUM_OPENPOSE):
            if person[k, 2] < 1:
                continue
            if k < 18:
                cv2.circle(canvas, _point(person, k), r, KEYPOINT_COLORS[k], thickness=-1)
            else:  # MMPose draws every point past the body at half the radius
                color = FOOT_COLORS[0 if k < 21 else 3] if k in FEET else (FACE_POINT_COLOR if k in FACE
                                                                          else HAND_POINT_COLOR)
                cv2.circle(canvas, _point(person, k), small, color, thickness=-1)
    return canvas
