"""Depth and surface normals as RGB images.

Depth: by default grey, NEAR = BRIGHT. Valid depth (finite, > 0) is normalised per image
between its 2nd and 98th percentiles (values outside are clipped), so a room and a street
both use the whole range; valid pixels map to 32..255 (nearest 255, farthest 32: dark grey)
and invalid pixels are 0, black, so "far" and "no measurement" stay distinguishable.

Normals: unit vectors in the viewer's frame (x right, y up, z towards the camera) shown as
(n + 1) / 2 · 255, so a wall facing the camera is (128, 128, 255); invalid pixels are black.
Normals computed from depth use a pinhole camera (OpenCV convention: x right, y down,
z forward) and are converted to the viewer's frame.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

FAR_LEVEL = 32  # grey level of the farthest valid depth; 0 is kept for invalid pixels

COLORMAPS = {
    "inferno": cv2.COLORMAP_INFERNO, "magma": cv2.COLORMAP_MAGMA, "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS, "turbo": cv2.COLORMAP_TURBO, "jet": cv2.COLORMAP_JET,
}


def valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def colour_depth(depth: np.ndarray, near_bright: bool = True, percentiles: tuple[float, float] = (2.0, 98.0),
                 colormap: str | None = None, inverse: bool = False) -> np.ndarray:
    """H×W depth (any unit; ≤ 0 or non-finite = invalid) → H×W×3 uint8.

    `inverse` normalises 1/depth (disparity) instead, which spreads near detail like MiDaS
    views do; `colormap` names an OpenCV colormap instead of grey.
    """
    d = np.asarray(depth, dtype=np.float64)
    valid = valid_depth(d)
    out = np.zeros(d.shape, np.uint8)
    if valid.any():
        v = np.where(valid, d, np.nan)
        if inverse:
            v = 1.0 / v
            near_bright = not near_bright  # larger disparity is nearer
        lo, hi = np.nanpercentile(v, percentiles)
        t = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full(v.shape, 0.5)
        if near_bright:
            t = 1.0 - t
        out[valid] = np.rint(FAR_LEVEL + t[valid] * (255.0 - FAR_LEVEL)).astype(np.uint8)
    if colormap is None or colormap == "gray":
        return np.repeat(out[..., None], 3, axis=2)
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; known: gray, {', '.join(sorted(COLORMAPS))}")
    rgb = cv2.cvtColor(cv2.applyColorMap(out, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def default_intrinsics(width: int, height: int, fov_deg: float = 60.0) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a square-pixel pinhole with the given horizontal field of view."""
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


def normals_from_depth(depth: np.ndarray, intrinsics: tuple[float, float, float, float]) -> np.ndarray:
    """H×W depth (z along the optical axis) → H×W×3 float32 unit normals in the viewer's frame.

    Back-projects every pixel, takes central differences of the 3D points along image rows and
    columns and crosses them; pixels whose 3×3 neighbourhood holds invalid depth get (0, 0, 0).
    """
    fx, fy, cx, cy = intrinsics
    z = np.asarray(depth, dtype=np.float64)
    valid = valid_depth(z)
    z = np.where(valid, z, 0.0)
    h, w = z.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1)
    du = np.gradient(pts, axis=1)
    dv = np.gradient(pts, axis=0)
    n = np.cross(dv, du)  # for a surface seen by the camera this points back at it (-z)
    facing_away = np.einsum("hwc,hwc->hw", n, pts) > 0
    n[facing_away] *= -1
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
    ok &= norm[..., 0] > 0
    n = np.where(ok[..., None], n / np.maximum(norm, 1e-12), 0.0)
    return (n * np.array([1.0, -1.0, -1.0])).astype(np.float32)  # camera frame → viewer frame


def colour_normals(normals: np.ndarray) -> np.ndarray:
    """H×W×3 unit normals (viewer frame) → (n + 1) / 2 · 255; zero or non-finite vectors → black."""
    n = np.asarray(normals, dtype=np.float64)
    norm = np.linalg.norm(np.nan_to_num(n), axis=-1)
    ok = np.isfinite(n).all(axis=-1) & (norm > 1e-6)
    n = np.where(ok[..., None], n / np.maximum(norm, 1e-12)[..., None], 0.0)
    rgb = np.clip(np.rint((n + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    rgb[~ok] = 0
    return rgb
