"""A pseudo-label (a labeller's prediction for one photo) → the RGB image a sentence holds.

Two styles:
- `lvm` (default): LVM's renderings. LVM took its pseudo-labels from Prismer's experts
  (ytongbai/LVM DATASET.md) and coloured segmentation afterwards (tokenize_examples/map_color.py):
  * depth as Prismer's experts/generate_depth.py: the model's disparity min-max normalised per
    image to 0..255 grey (near = bright); a model predicting depth is inverted first;
  * normals as experts/generate_normal.py: ((n + 1) / 2) · 255 as RGB;
  * edges as the annotator's map: probability · 255, white edges on black (the ControlNet
    annotators' convention; Prismer's DexiNed script saved the inverse, black on white);
  * segmentation: class ids through one fixed palette (renderers/palette.py, entry id + 1, so
    class 0 is coloured too), where LVM used a fixed random 256-colour table.
- `uvd`: the renderers ground truth goes through (renderers/depth.py: percentile-normalised
  depth with a dark-grey floor), so pseudo and real labels look alike in one build.
"""
from __future__ import annotations

import numpy as np

from renderers.depth import colour_depth, colour_normals
from renderers.palette import colorize

STYLES = ("lvm", "uvd")


def minmax_grey(disparity: np.ndarray) -> np.ndarray:
    """Prismer's depth image: (d − min) / (max − min) · 255 over the finite values; non-finite → 0."""
    d = np.asarray(disparity, np.float64)
    ok = np.isfinite(d)
    out = np.zeros(d.shape, np.uint8)
    if ok.any():
        lo, hi = d[ok].min(), d[ok].max()
        scaled = (d[ok] - lo) / (hi - lo) if hi > lo else np.zeros(int(ok.sum()))
        out[ok] = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
    return out


def to_disparity(pred: np.ndarray, disparity: bool) -> np.ndarray:
    """A disparity map as is; a depth map as 1/depth (which is also how a disparity becomes depth)."""
    if disparity:
        return np.asarray(pred, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pred > 0, 1.0 / pred, np.nan).astype(np.float32)  # no depth: no disparity


def render_label(kind: str, pred: np.ndarray, disparity: bool = False, style: str = "lvm") -> np.ndarray:
    """One prediction (depth/disparity H×W, normals H×W×3, edges H×W in [0, 1], class ids H×W) → H×W×3 uint8."""
    if style not in STYLES:
        raise ValueError(f"render_label: unknown style {style!r}; one of {', '.join(STYLES)}")
    if kind == "depth":
        if style == "uvd":  # ground truth's renderer wants depth: a disparity is inverted first
            return colour_depth(to_disparity(pred, False) if disparity else pred)
        grey = minmax_grey(to_disparity(pred, disparity))
        return np.repeat(grey[..., None], 3, axis=2)
    if kind == "normals":
        return colour_normals(pred)
    if kind == "segmentation":
        return colorize(pred.astype(np.int64) + 1)  # model classes start at 0; palette 0 is "none"
    if kind == "edges":
        grey = np.round(np.clip(np.nan_to_num(pred), 0.0, 1.0) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    raise ValueError(f"render_label: unknown kind {kind!r}")
