"""Task functions for dense maps and pairs (the contract: sentence_builders/tasks.py): dense maps from
annotated sources, low-level pairs generated from any photo, real input/target pairs, and
pseudo-labels from a local expert model.

Each returns one example, `[(x, lossless), (y, lossless)]`, both ctx.image.size square RGB:
photos and degraded photos are stored as JPEG, rendered maps (depth, normals, edges,
segmentation, keypoints) losslessly. Dense maps are resized with nearest-neighbour on the
same crop as their photo, so classes and depth values are never blended and stay aligned.
Options are keyword arguments with defaults (a builder may pass them as `task_args`).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from renderers import degrade
from renderers.depth import colour_depth, colour_normals, default_intrinsics, normals_from_depth, valid_depth
from renderers.edges import canny
from renderers.palette import colorize
from uvd.annotations import require
from uvd.api import BuildContext
from uvd.errors import BadInput
from uvd.image import decode_image, normalise
from uvd.records import Item

Example = list[tuple[np.ndarray, bool]]


def _full(img: Any, ctx: BuildContext) -> np.ndarray:
    return img if isinstance(img, np.ndarray) else decode_image(bytes(img), ctx.image)


def _full_photo(item: Item, ctx: BuildContext) -> np.ndarray:
    """The photo decoded at full size: dense maps are checked against its exact shape."""
    if not item.images:
        raise BadInput("no_image", "item has no photo")
    return _full(item.images[0], ctx)


def _annotation(item: Item, key: str, hint: str) -> Any:
    return require(item.annotations, key, hint)


def _same_size(photo: np.ndarray, ann: np.ndarray, what: str) -> None:
    if photo.shape[:2] != ann.shape[:2]:
        raise BadInput("size_mismatch", f"{what} is {ann.shape[1]}x{ann.shape[0]} but its image is "
                                        f"{photo.shape[1]}x{photo.shape[0]}")


def _nearest(arr: np.ndarray, ctx: BuildContext) -> np.ndarray:
    return normalise(arr, ctx.image, interpolation=cv2.INTER_NEAREST)


# --- dense annotations -------------------------------------------------------------------------

def semantic_segmentation(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Photo → its label map through the shared palette (0 = unlabelled/ignored = black)."""
    labels = np.asarray(_annotation(item, "label_map", "use the `segmentation` source"))
    photo = _full_photo(item, ctx)
    _same_size(photo, labels, "label map")
    small = _nearest(labels.astype(np.int32), ctx)
    return [(normalise(photo, ctx.image), False), (colorize(small), True)]


def depth(item: Item, ctx: BuildContext, rng: np.random.Generator, colormap: str | None = None,
          inverse: bool = False, percentiles: tuple[float, float] = (2.0, 98.0)) -> Example:
    """Photo → depth, near = bright, per-image 2nd–98th percentile of valid depth (renderers/depth.py)."""
    d = np.asarray(_annotation(item, "depth", "use the `depth` source or the pseudo_depth task"), np.float32)
    photo = _full_photo(item, ctx)
    _same_size(photo, d, "depth map")
    if not valid_depth(d).any():
        raise BadInput("depth", "no valid depth value (all zero or non-finite)")
    small = _nearest(d, ctx)
    return [(normalise(photo, ctx.image), False), (colour_depth(small, percentiles=percentiles, colormap=colormap,
                                                               inverse=inverse), True)]


def normals(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Photo → surface normals, from ground truth when the item has them, else from its depth."""
    photo = _full_photo(item, ctx)
    n = item.annotations.get("normals")
    if n is not None:
        n = np.asarray(n, np.float32)
        _same_size(photo, n, "normal map")
    else:
        d = np.asarray(_annotation(item, "depth", "normals need ground-truth normals or depth"), np.float32)
        _same_size(photo, d, "depth map")
        if not valid_depth(d).any():
            raise BadInput("depth", "no valid depth value (all zero or non-finite)")
        h, w = d.shape
        intr = item.annotations.get("intrinsics") or default_intrinsics(w, h, item.annotations.get("fov_deg", 60.0))
        n = normals_from_depth(d, tuple(intr))
    return [(normalise(photo, ctx.image), False), (colour_normals(_nearest(n, ctx)), True)]


# --- generated from any photo ------------------------------------------------------------------

def _photo(item: Item, ctx: BuildContext) -> np.ndarray:
    if not item.images:
        raise BadInput("no_image", "item has no photo")
    return ctx.photo(item.images[0])


def edges(item: Item, ctx: BuildContext, rng: np.random.Generator, low: float = 100.0, high: float = 200.0,
          blur_sigma: float = 0.0) -> Example:
    """Photo → Canny edges (white on black) of the same 256×256 photo; defaults as cv2.Canny(100, 200)."""
    photo = _photo(item, ctx)
    return [(photo, False), (canny(photo, low, high, blur_sigma), True)]


def colorization(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Grey (0.2989 R + 0.5870 G + 0.1140 B) → colour photo."""
    photo = _photo(item, ctx)
    return [(degrade.grayscale(photo), False), (photo, False)]


def inpainting(item: Item, ctx: BuildContext, rng: np.random.Generator, hole_prob: float = 0.3,
               patch: int = 32) -> Example:
    """Photo with a black square or black 32×32 tiles → the photo (LVM's masking)."""
    photo = _photo(item, ctx)
    return [(degrade.inpainting(photo, rng, hole_prob, patch), False), (photo, False)]


def _real_pair(item: Item, ctx: BuildContext) -> Example:
    """An item of the `paired` source: its own input and target, cropped alike."""
    x, y = item.images[0], item.images[1]
    xa, ya = _full(x, ctx), _full(y, ctx)
    # Different sizes would crop differently and break pixel alignment (stereo, de-rain).
    _same_size(xa, ya, "target")
    return [(normalise(xa, ctx.image), False), (normalise(ya, ctx.image), False)]


def _degraded(item: Item, ctx: BuildContext, fn: Any, rng: np.random.Generator) -> Example:
    if len(item.images) >= 2:
        return _real_pair(item, ctx)
    photo = _photo(item, ctx)
    return [(fn(photo, rng), False), (photo, False)]


def denoise(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Noisy → clean; a two-image item (paired source) is used as is, a photo gets Gaussian noise."""
    return _degraded(item, ctx, degrade.noise, rng)


def lowlight(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Dark → normal exposure; synthetic exposure × gamma unless the item is a real pair."""
    return _degraded(item, ctx, degrade.low_light, rng)


def derain(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Rainy → clean; synthetic streaks unless the item is a real pair."""
    return _degraded(item, ctx, degrade.rain, rng)


def deblur(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Blurred → sharp; Gaussian or motion blur unless the item is a real pair."""
    return _degraded(item, ctx, degrade.blur, rng)


def paired(item: Item, ctx: BuildContext, rng: np.random.Generator) -> Example:
    """Input → target of a `paired` source item (style transfer, stereo left → right, ...)."""
    if len(item.images) < 2:
        raise BadInput("unpaired", "item has one image; this task needs the `paired` source")
    return _real_pair(item, ctx)


# --- pseudo-labels from a local expert model --------------------------------------------------

def pseudo_label(item: Item, ctx: BuildContext, rng: np.random.Generator, model: str | None = None,
                 kind: str = "depth", arch: str | None = None, arch_args: dict[str, Any] | None = None,
                 mean: tuple[float, float, float] = (0.0, 0.0, 0.0), std: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 inverse_output: bool | None = None, render: str = "lvm", input_size: int = 0) -> Example:
    """Photo → the annotation a local model predicts for it (renderers/labeler.py), drawn in LVM's
    style (`render: lvm`, renderers/label_render.py) or like ground truth (`render: uvd`).
    `inverse_output`: the model predicts disparity (default: what a transformers folder says, else no)."""
    from renderers.labeler import load_labeler

    if not model:
        from uvd.errors import ConfigError
        raise ConfigError("pseudo_label: give `model`, the local path of a transformers folder, an annotator "
                          ".pth, a .pt2, TorchScript file or state dict")
    photo = _photo(item, ctx)
    labeler = load_labeler(model, kind, arch, arch_args, mean=list(mean), std=list(std), input_size=input_size)
    h, w = photo.shape[:2]
    disparity = labeler.disparity if inverse_output is None else bool(inverse_output)
    return [(photo, False), (render_prediction(kind, labeler(photo), h, w, disparity, render), True)]


def _check_pseudo_label(args: dict[str, Any]) -> None:
    """At plan time: the model file exists (so `uvd plan` says NOT PLANNED instead of failing every item)."""
    from uvd.config import require_path
    from uvd.errors import ConfigError

    if not args.get("model"):
        raise ConfigError("pseudo_label: give `model`, the local path of a transformers folder, an annotator .pth, "
                          "a .pt2, TorchScript file or state dict")
    require_path(str(args["model"]), "pseudo_label.model")
    if args.get("render", "lvm") not in ("lvm", "uvd"):
        raise ConfigError(f"pseudo_label: render is lvm or uvd, not {args['render']!r}")


pseudo_label.check_args = _check_pseudo_label  # type: ignore[attr-defined]


def render_prediction(kind: str, pred: np.ndarray, height: int, width: int, inverse_output: bool = False,
                      style: str = "lvm") -> np.ndarray:
    """A labeler's output for one photo → an RGB image (renderers/label_render.py; keypoints as skeletons)."""
    from renderers.label_render import render_label

    if kind == "keypoints":
        return render_keypoints(pred, height, width)
    return render_label(kind, pred, disparity=inverse_output, style=style)


def render_keypoints(kp: np.ndarray, height: int, width: int, min_score: float = 0.0) -> np.ndarray:
    """K×3 (x, y, score): a known pose format (by K: 17 COCO, 133 COCO-WholeBody, 16 MPII, 26/136
    Halpe; uvd/keypoint_formats.py) as an OpenPose skeleton, any other K as palette dots."""
    from renderers.palette import class_color
    from renderers.pose import render_pose
    from uvd.keypoint_formats import detect_format

    visible = (kp[:, 2] > min_score).astype(np.float64)
    fmt = detect_format(None, len(kp))
    if fmt is not None:
        people = np.concatenate([kp[:, :2], visible[:, None]], axis=1)[None]
        return render_pose(people, height, width, keypoint_format=fmt)
    canvas = np.zeros((height, width, 3), np.uint8)
    r = max(1, round(min(height, width) / 64))
    for k, (x, y, _) in enumerate(kp):
        if visible[k]:
            cv2.circle(canvas, (int(round(x)), int(round(y))), r, class_color(k + 1), thickness=-1)
    return canvas
