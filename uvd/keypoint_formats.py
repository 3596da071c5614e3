"""2D human-pose keypoint formats and how each maps onto OpenPose's whole-body layout.

The facts are MMPose 1.3.2's (open-mmlab/mmpose, Apache License 2.0):

- keypoint names of each format: `configs/_base_/datasets/<file>.py` (`FORMAT_FILES` below);
  formats of at most 26 points have their names copied here; COCO-WholeBody (133) and
  Halpe-136 are known by their count and their mapping;
- the index mappings onto COCO-WholeBody's 133 points: the `KeypointConverter` mappings of
  `configs/wholebody_2d_keypoint/rtmpose/cocktail14/rtmw-l_8xb320-270e_cocktail14-384x288.py`
  (`aic_coco133`, `crowdpose_coco133`, `mpii_coco133`, `halpe_coco133`, `posetrack_coco133`);
  COCO, OCHuman (COCO's 17 names) and COCO-WholeBody map onto it one to one;
- the OpenPose layout: `coco_wholebody_openpose.py` (134 points: the 17 body points with a neck
  inserted and reordered as `PoseLocalVisualizer._draw_instances_kpts_openpose` does, then 6
  feet, 68 face, 21 left-hand and 21 right-hand points).

tests/test_pose_formats.py compares every table here with MMPose's files when mmpose is
installed. One choice is ours: a format that labels a neck (AI Challenger, CrowdPose, Halpe)
keeps its own where it is labelled; elsewhere the neck is the mean of the two shoulders when
both are labelled (MMPose's rule for all).
A point a format lacks has visibility 0 and is never drawn.
"""
from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np

COCO17: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_HALPE26 = COCO17 + ("head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe",
                     "right_small_toe", "left_heel", "right_heel")

# format -> its keypoint names in MMPose's order (None: known by count only).
NAMES: dict[str, tuple[str, ...] | None] = {
    "coco": COCO17,
    "ochuman": COCO17,
    "coco_wholebody": None,
    "aic": ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
            "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck"),
    "crowdpose": ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "top_head", "neck"),
    "mpii": ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
             "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
             "left_elbow", "left_wrist"),
    "halpe26": _HALPE26,
    "halpe136": None,
    "posetrack18": ("nose", "head_bottom", "head_top") + COCO17[3:],
}
NUM_KEYPOINTS: dict[str, int] = {f: (len(n) if n else {"coco_wholebody": 133, "halpe136": 136}[f])
                                 for f, n in NAMES.items()}
# MMPose's dataset-info file of each format (configs/_base_/datasets/).
FORMAT_FILES: dict[str, str] = {
    "coco": "coco.py", "ochuman": "ochuman.py", "coco_wholebody": "coco_wholebody.py", "aic": "aic.py",
    "crowdpose": "crowdpose.py", "mpii": "mpii.py", "halpe26": "halpe26.py", "halpe136": "halpe.py",
    "posetrack18": "posetrack18.py",
}
FORMATS: tuple[str, ...] = tuple(NAMES)
# What a source's `keypoint_format` option accepts (a test keeps it equal to FORMATS + auto).
FormatOption = Literal["auto", "coco", "ochuman", "coco_wholebody", "aic", "crowdpose", "mpii", "halpe26", "halpe136",
                       "posetrack18"]

# format -> [(its index, COCO-WholeBody index)]: MMPose's cocktail14 KeypointConverter mappings.
_HALPE_COCO133 = ([(i, i) for i in range(17)] + [(20, 17), (21, 20), (22, 18), (23, 21), (24, 19), (25, 22)]
                  + [(i, i - 3) for i in range(26, 136)])
TO_WHOLEBODY: dict[str, tuple[tuple[int, int], ...]] = {
    "coco": tuple((i, i) for i in range(17)),
    "ochuman": tuple((i, i) for i in range(17)),
    "coco_wholebody": tuple((i, i) for i in range(133)),
    "aic": ((0, 6), (1, 8), (2, 10), (3, 5), (4, 7), (5, 9), (6, 12), (7, 14), (8, 16), (9, 11), (10, 13),
            (11, 15)),
    "crowdpose": ((0, 5), (1, 6), (2, 7), (3, 8), (4, 9), (5, 10), (6, 11), (7, 12), (8, 13), (9, 14), (10, 15),
                  (11, 16)),
    "mpii": ((0, 16), (1, 14), (2, 12), (3, 11), (4, 13), (5, 15), (10, 10), (11, 8), (12, 6), (13, 5), (14, 7),
             (15, 9)),
    "halpe26": tuple((s, d) for s, d in _HALPE_COCO133 if s < 26),
    "halpe136": tuple(_HALPE_COCO133),
    "posetrack18": ((0, 0),) + tuple((i, i) for i in range(3, 17)),
}
# A labelled neck (OpenPose's neck point) in formats that have one.
NECK: dict[str, int] = {"aic": 13, "crowdpose": 13, "halpe26": 18, "halpe136": 18}

# COCO-WholeBody 133 + neck → OpenPose order (coco_wholebody_openpose.py): MMPose's permutation.
_MMPOSE_IDX = (17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3)
_OPENPOSE_IDX = (1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17)
NUM_OPENPOSE = 134
BODY = range(0, 18)
FEET = range(18, 24)
FACE = range(24, 92)
LEFT_HAND = range(92, 113)
RIGHT_HAND = range(113, 134)


def check_format(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"unknown keypoint format {name!r}; known: {', '.join(FORMATS)}")
    return name


def detect_format(names: Sequence[str] | None, count: int, wholebody_fields: bool = False) -> str | None:
    """The format of a COCO-style category: the table of `count` points whose names agree with
    `names` at the most positions (more than half; datasets spell a few differently, e.g.
    CrowdPose's own file says "head" where MMPose says "top_head"); without names, the only
    format of that many points. None when ambiguous (14 points without names: AIC or CrowdPose)
    and when names are given that match no table: a 17-point animal skeleton is not a COCO person
    (`undetected_reason` says why, for the audit)."""
    if wholebody_fields:
        return "coco_wholebody"
    candidates = [f for f, n in NUM_KEYPOINTS.items() if n == count and f != "ochuman"]  # OCHuman draws as COCO
    if names and len(names) == count:
        scored = sorted(((sum(a == b for a, b in zip(names, NAMES[f] or ())), f) for f in candidates), reverse=True)
        if scored and scored[0][0] * 2 > count and (len(scored) == 1 or scored[1][0] < scored[0][0]):
            return scored[0][1]
        return None
    plain = [f for f in candidates if f != "posetrack18"]  # PoseTrack18 is told apart by its names only
    return plain[0] if len(plain) == 1 else None


def undetected_reason(names: Sequence[str] | None, count: int) -> str:
    """Why `detect_format(names, count)` found no format, in words for an audit reason."""
    having = [f for f, n in NUM_KEYPOINTS.items() if n == count]
    formats = f"formats with {count} points: {', '.join(having)}" if having else f"no known format has {count} points"
    if names and len(names) == count:
        shown = ", ".join(map(str, list(names)[:4])) + (", ..." if count > 4 else "")
        return f"{count} keypoints named [{shown}] match no known table ({formats}); set `keypoint_format`"
    return f"{count} keypoints without names ({formats}); set `keypoint_format`"


def to_openpose(keypoints: np.ndarray, fmt: str) -> np.ndarray:
    """(P, K, 3) keypoints (x, y, v) of `fmt` → (P, 134, 3) OpenPose whole-body order, v ∈ {0, 1}."""
    k = NUM_KEYPOINTS[check_format(fmt)]
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, k, 3)
    visible = (kp[..., 2] > 0).astype(np.float64)
    wb = np.zeros((kp.shape[0], 133, 3), np.float64)
    for src, dst in TO_WHOLEBODY[fmt]:
        wb[:, dst, :2] = kp[:, src, :2]
        wb[:, dst, 2] = visible[:, src]
    neck = np.zeros((kp.shape[0], 3), np.float64)
    neck[:, :2] = (wb[:, 5, :2] + wb[:, 6, :2]) / 2
    neck[:, 2] = wb[:, 5, 2] * wb[:, 6, 2]
    if fmt in NECK:  # a labelled neck wins over the shoulders' mean
        own = visible[:, NECK[fmt]] > 0
        neck[own, :2] = kp[own, NECK[fmt], :2]
        neck[own, 2] = 1.0
    out = np.insert(wb, 17, neck, axis=1)
    out[:, list(_OPENPOSE_IDX)] = out[:, list(_MMPOSE_IDX)]
    return out


def present(fmt: str) -> Mapping[str, bool]:
    """Which OpenPose parts a format can fill (for docs and tests)."""
    dst = {d for _, d in TO_WHOLEBODY[fmt]}
    return {"feet": any(17 <= d < 23 for d in dst), "face": any(23 <= d < 91 for d in dst),
            "hands": any(d >= 91 for d in dst)}
