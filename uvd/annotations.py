"""The annotation contract: which keys `Item.annotations` may hold, their types and units.

Sources write these keys; task functions, builders and renderers read them. A key not listed
here is not part of the contract (a plug-in may add its own, under a name of its own). Every
coordinate is in ORIGINAL pixels of the item's own image (x right, y down, origin at the
top-left corner of the top-left pixel), before any resize or crop: the builder maps it to the
256×256 canvas with `uvd.image.fit_transform`. Arrays are numpy. All keys are optional: each
task says which ones it needs and fails the item with `no_annotation`/`empty` when absent.

Who writes what (source → keys):

| source            | keys                                                               | read by |
|-------------------|--------------------------------------------------------------------|---------|
| coco, mpii        | width, height, objects (bbox, segmentation, keypoints + format)    | tasks detection, pose, segmentation, instance_segmentation |
| segmentation      | label_map                                                          | task semantic_segmentation |
| depth             | depth, normals?, intrinsics?, fov_deg                              | tasks depth, normals |
| paired            | paired_task                                                        | tasks paired, stereo, style, denoise, … |
| video             | clips, frame_indices                                               | builder video |
| annotated_video   | masks, clips, frame_indices, frame_names                           | builders interleaved, grouped |
| pose_video        | keypoints_per_frame, keypoint_format, width, height, clips, …      | builders interleaved, grouped |
| image_folder      | (none: the class label is `Item.label`)                            | builder category |
"""
from __future__ import annotations

from typing import Any, TypedDict, Union

import numpy as np

from uvd.keypoint_formats import FORMATS  # noqa: F401  (re-exported: the names `keypoint_format` takes)

# COCO segmentation: polygons [[x1, y1, x2, y2, ...], ...] in pixels, or RLE {"size": [h, w], "counts": ...}.
Segmentation = Union[list[list[float]], dict[str, Any]]


class AnnotatedObject(TypedDict, total=False):
    """One object of an annotated image (COCO-style)."""

    id: int  # the dataset's annotation id (objects are sorted by it)
    category_id: int  # the dataset's class id; boxes and semantic masks take their colour from it
    category: str  # class name
    iscrowd: int  # 0 or 1
    bbox: list[float] | None  # [x, y, w, h] pixels, w and h > 0
    segmentation: Segmentation | None
    keypoints: np.ndarray | None  # (K, 3) float64: x, y pixels and visibility v (0 = not labelled)
    keypoint_format: str | None  # a name in uvd/keypoint_formats.FORMATS: fixes K, the point order, the skeleton


class Clip(TypedDict):
    """Which frames one sentence takes (sources/video_plan.Clip.as_dict())."""

    stride: int  # frames apart in the video, after a short video reduced it
    requested_stride: int  # the configured stride
    start: int  # index of the first frame (in the source's frame list)
    indices: list[int]  # every frame index of the clip, increasing


class Annotations(TypedDict, total=False):
    """`Item.annotations`: every key of the contract, its type and unit."""

    # --- annotated images (sources: coco, mpii) -------------------------------------------------
    width: int  # the photo's width in pixels as the annotation file states it (checked against the photo)
    height: int
    objects: list[AnnotatedObject]
    # --- dense maps (sources: segmentation, depth) -----------------------------------------------
    label_map: np.ndarray  # H×W int32 display ids, 0 = unlabelled/ignored (palette colours them)
    depth: np.ndarray  # H×W float32 metres, 0 or non-finite = invalid
    normals: np.ndarray  # H×W×3 float32 unit vectors, camera frame (x right, y down, z forward), 0 = invalid
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    fov_deg: float  # horizontal field of view, degrees, when intrinsics are unknown
    # --- real input/target pairs (source: paired): images = [input, target] ----------------------
    paired_task: str  # the task the pair teaches: derain, denoise, lowlight, stereo, style, …
    # --- video (sources: video, annotated_video, pose_video): images = the frames clips need -----
    clips: list[Clip]
    frame_indices: list[int]  # Item.images[k] is frame frame_indices[k]
    frame_names: list[str]  # file stem of each frame in Item.images (annotated video)
    masks: list[np.ndarray]  # per frame in Item.images: H×W int32 object ids (0 = background) or H×W×3 RGB
    keypoints_per_frame: list[np.ndarray]  # per frame in Item.images: (P, K, 3) people (x, y, v); P may be 0
    keypoint_format: str  # the format of keypoints_per_frame (uvd/keypoint_formats.FORMATS)


KEYS: frozenset[str] = frozenset(Annotations.__annotations__)
OBJECT_KEYS: frozenset[str] = frozenset(AnnotatedObject.__annotations__)


def require(annotations: dict[str, Any], key: str, hint: str) -> Any:
    """A task's or builder's read of one contract key: `no_annotation` (bad input) when the item
    lacks it; a key outside the contract is a programming error (KeyError)."""
    if key not in KEYS:
        raise KeyError(f"{key!r} is not an annotation key of uvd/annotations.py")
    value = annotations.get(key)
    if value is None:
        from uvd.errors import BadInput

        raise BadInput("no_annotation", f"item has no {key} ({hint})")
    return value


def unknown_keys(annotations: dict[str, Any]) -> list[str]:
    """Keys outside the contract (a test runs every source through this)."""
    return sorted(set(annotations) - KEYS)
