"""Task functions for COCO-style annotated images (see sentence_builders/tasks.py for the contract).

Each returns `[(photo, False), (target, True)]`, both size×size RGB uint8: the photo
normalised by the build's resize mode, and the annotation rendered so that it lines up with
that photo pixel for pixel. Boxes and skeletons are drawn directly at the output size (their
coordinates mapped with `fit_transform(...).points`), so lines stay crisp and their width is
the same whatever the photo's size. Masks are rasterised at the photo's resized size (polygons
scaled; RLE decoded at full size and resized nearest-neighbour), turned into a label map, then
cropped or padded like the photo and coloured from the palette: colours are never blended.

An item without anything to render for a task (no boxes, no person with a visible keypoint,
no mask) raises BadInput("empty", ...): the `pairs` builder audits it, the `tuple` builder
skips that task for that image.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from renderers.boxes import draw_boxes
from renderers.masks import decode_segmentation_resized, label_map
from renderers.palette import colorize
from renderers.pose import render_pose
from uvd.annotations import AnnotatedObject
from uvd.keypoint_formats import to_openpose
from uvd.api import BuildContext
from uvd.errors import BadInput
from uvd.image import Transform, decode_image, fit_transform, normalise
from uvd.records import Item

Example = list[tuple[np.ndarray, bool]]

# One decoded photo, shared by the tasks a tuple runs on the same item. The key holds the
# bytes object itself, so its id cannot be reused while it is cached.
_last: tuple[Any, Any, np.ndarray, Transform, tuple[int, int]] | None = None


def photo_and_transform(item: Item, ctx: BuildContext) -> tuple[np.ndarray, Transform, tuple[int, int]]:
    """(normalised photo, original→output transform, (width, height)) of an annotated item."""
    global _last
    data = item.images[0] if item.images else None
    if data is None:
        raise BadInput("no_image", "item has no photo")
    if _last is not None and _last[0] is data and _last[1] == ctx.image:
        return _last[2], _last[3], _last[4]
    arr = data if isinstance(data, np.ndarray) else decode_image(bytes(data), ctx.image)
    h, w = arr.shape[:2]
    ann = item.annotations
    if (ann.get("width"), ann.get("height")) not in ((w, h), (None, None)):
        raise BadInput("size_mismatch", f"photo is {w}x{h} but the annotations say {ann.get('width')}x{ann.get('height')}")
    photo = normalise(arr, ctx.image)
    t = fit_transform(w, h, ctx.image.size, ctx.image.resize)
    _last = (data, ctx.image, photo, t, (w, h))
    return photo, t, (w, h)


def _objects(item: Item, field: str) -> list[dict[str, Any]]:
    return [o for o in item.annotations.get("objects", []) if o.get(field) is not None]


def detection(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """The photo, then the photo with a box around every object in its class colour."""
    objs = _objects(item, "bbox")
    if not objs:
        raise BadInput("empty", "no boxes to draw")
    photo, t, _ = photo_and_transform(item, ctx)
    xywh = np.array([o["bbox"] for o in objs], np.float64)
    corners = np.concatenate([t.points(xywh[:, :2]), t.points(xywh[:, :2] + xywh[:, 2:])], axis=1)
    return [(photo, False), (draw_boxes(photo, corners, [o["category_id"] for o in objs]), True)]


def pose(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """The photo, then every person's OpenPose skeleton on black."""
    people = [o for o in _objects(item, "keypoints") if np.any(o["keypoints"][:, 2] > 0)]
    if not people:
        raise BadInput("empty", "no person with a labelled keypoint")
    photo, t, _ = photo_and_transform(item, ctx)
    size = ctx.image.size
    return [(photo, False), (render_pose(people_in_openpose(people, t), size, size, keypoint_format="openpose"), True)]


def people_in_openpose(people: list[AnnotatedObject], t: Transform) -> np.ndarray:
    """People of any keypoint format, mapped to output pixels, then to OpenPose's (P, 134, 3)."""
    out = []
    for o in people:
        kp = np.array(o["keypoints"], np.float64)
        kp[:, :2] = t.points(kp[:, :2])
        out.append(to_openpose(kp[None], o.get("keypoint_format") or "coco")[0])
    return np.array(out, np.float64)


_last_masks: tuple[Any, Any, list[np.ndarray]] | None = None  # shared by the two segmentation tasks


def _masks(item: Item, ctx: BuildContext) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The objects with masks, and their masks at the resized (pre-crop) size of the photo."""
    global _last_masks
    objs = _objects(item, "segmentation")
    if not objs:
        raise BadInput("empty", "no masks to draw")
    key = item.annotations.get("objects")
    if _last_masks is not None and _last_masks[0] is key and _last_masks[1] == ctx.image:
        return objs, _last_masks[2]
    w, h = int(item.annotations["width"]), int(item.annotations["height"])
    nw, nh = fit_transform(w, h, ctx.image.size, ctx.image.resize).resized
    masks = [decode_segmentation_resized(o["segmentation"], h, w, nw, nh) for o in objs]
    _last_masks = (key, ctx.image, masks)
    return objs, masks


def _label_image(labels: np.ndarray, ctx: BuildContext) -> np.ndarray:
    """Crop/pad the resized label ids like the photo (nearest, never blended), then colour them."""
    if labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise BadInput("bad_annotation", f"label id {labels.max()} beyond 65535")
    return colorize(normalise(labels.astype(np.uint16), ctx.image, interpolation=cv2.INTER_NEAREST))


def segmentation(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """The photo, then its semantic map: each object's pixels in its class colour, on black
    (`renderers.masks.render_semantic`, resized nearest-neighbour)."""
    photo, _, _ = photo_and_transform(item, ctx)
    objs, masks = _masks(item, ctx)
    labels = label_map(masks, [o["category_id"] for o in objs], *masks[0].shape)
    return [(photo, False), (_label_image(labels, ctx), True)]


def instance_segmentation(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """The photo, then its instance map: the k-th object (by annotation id) in palette entry k + 1
    (`renderers.masks.render_instances`, resized nearest-neighbour)."""
    photo, _, _ = photo_and_transform(item, ctx)
    _, masks = _masks(item, ctx)
    labels = label_map(masks, list(range(1, len(masks) + 1)), *masks[0].shape)
    return [(photo, False), (_label_image(labels, ctx), True)]
