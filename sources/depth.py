"""Images with depth maps (NYU / KITTI / DIODE style), optionally with ground-truth normals.

Depth files, matched to photos by relative name:
- 16-bit (or 8-bit) PNG of integer units, divided by `depth_scale` to get metres
  (1000 for millimetres as in NYU-v2 exports, 256 for KITTI);
- float `.npy` (H×W or H×W×1) already in metres.
0, negative and non-finite values mean "no measurement" and stay invalid (drawn black).
Normals (optional folder): `.npy` float H×W×3 unit vectors or a PNG storing (n + 1) / 2 · 255,
both in the viewer's frame (x right, y up, z towards the camera). Without them the
`normals` task computes normals from depth with the intrinsics given here.
"""
from __future__ import annotations

import io
import posixpath
from typing import Any, Iterator

import cv2
import numpy as np
from pydantic import Field, model_validator

from sources.paired import index_folder, match_folders
from sources.remote import read_bytes
from uvd.api import Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, reason_of
from uvd.image import header_size
from uvd.records import Failed, Item


class DepthOptions(Strict):
    images: str
    depth: str
    normals: str | None = None
    depth_scale: float = Field(1000.0, gt=0)  # PNG units per metre
    # Pinhole intrinsics in pixels of the ORIGINAL image, for normals computed from depth;
    # when absent, a camera with `fov_deg` horizontal field of view is assumed.
    fx: float | None = Field(None, gt=0)
    fy: float | None = Field(None, gt=0)
    cx: float | None = None
    cy: float | None = None
    fov_deg: float = Field(60.0, gt=1, lt=179)
    image_suffixes: list[str] = Field(default_factory=lambda: [".jpg", ".jpeg", ".png"])

    @model_validator(mode="after")
    def _paths_exist(self) -> "DepthOptions":
        require_path(self.images, "depth.images")
        require_path(self.depth, "depth.depth")
        if self.normals:
            require_path(self.normals, "depth.normals")
        if (self.fx is None) != (self.fy is None):
            raise ValueError("give both fx and fy, or neither")
        return self


def _load_npy(data: bytes, what: str, max_pixels: int) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise BadInput("decode", f"{what}: not a readable .npy ({type(err).__name__}: {err})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise BadInput("decode", f"{what}: .npy holds {type(arr).__name__} {getattr(arr, 'dtype', '')}, not numbers")
    if arr.ndim >= 2 and arr.shape[0] * arr.shape[1] > max_pixels:  # the same bound as a PNG's header
        raise BadInput("too_large", f"{what} {arr.shape[1]}x{arr.shape[0]} exceeds max_pixels={max_pixels}")
    return arr


def _check_png(data: bytes, max_pixels: int, what: str) -> None:
    """Refuse decompression bombs from the header, before OpenCV allocates the image."""
    w, h = header_size(data)
    if w * h > max_pixels:
        raise BadInput("too_large", f"{what} {w}x{h} exceeds max_pixels={max_pixels}")


def decode_depth(data: bytes, suffix: str, depth_scale: float, max_pixels: int = 100_000_000) -> np.ndarray:
    """Depth file → H×W float32 metres, invalid = 0."""
    if suffix == ".npy":
        arr = _load_npy(data, "depth", max_pixels)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2 or arr.dtype.kind not in "fiu":
            raise BadInput("depth", f"expected an H×W numeric array, got {arr.shape} {arr.dtype}")
        depth = arr.astype(np.float32)
    else:
        _check_png(data, max_pixels, "depth map")
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise BadInput("decode", "depth PNG does not decode")
        if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
            raise BadInput("depth", f"depth PNG must be single-channel 8/16-bit, got {arr.shape} {arr.dtype}")
        depth = arr.astype(np.float32) / np.float32(depth_scale)
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


def decode_normals(data: bytes, suffix: str, max_pixels: int = 100_000_000) -> np.ndarray:
    """Normals file → H×W×3 float32 in the viewer's frame; black PNG pixels become (0, 0, 0)."""
    if suffix == ".npy":
        n = _load_npy(data, "normals", max_pixels).astype(np.float32)
    else:
        _check_png(data, max_pixels, "normal map")
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.ndim != 3 or arr.shape[2] < 3:
            raise BadInput("normals", "normals PNG must be a 3-channel image")
        rgb = cv2.cvtColor(np.ascontiguousarray(arr[..., :3]), cv2.COLOR_BGR2RGB)
        top = 65535.0 if rgb.dtype == np.uint16 else 255.0
        n = rgb.astype(np.float32) / np.float32(top) * 2.0 - 1.0
        n[(rgb == 0).all(axis=-1)] = 0.0
    if n.ndim != 3 or n.shape[2] != 3:
        raise BadInput("normals", f"expected H×W×3 normals, got {n.shape}")
    return n


class DepthSource(Source):
    """Items: `images=[photo bytes]`, `annotations={"depth": H×W float32 metres, "normals"?: H×W×3,
    "intrinsics"?: (fx, fy, cx, cy), "fov_deg": float}`."""

    name = "depth"
    Options = DepthOptions
    item_key = "items"  # one entry per item: the planner may regroup them (uvd/regroup.py)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        o = self.options
        rows = match_folders(index_folder(o.images, o.image_suffixes),
                             index_folder(o.depth, [".png", ".npy"]), "image", "depth map")
        normals = index_folder(o.normals, [".png", ".npy"]) if o.normals else {}
        items = []
        for item_id, img, dep, problem in rows:
            nrm = normals.get(item_id, [])
            if not problem and len(nrm) > 1:
                problem = f"ambiguous: several normals files named {item_id!r}"
            items.append([item_id, img, dep, nrm[0] if nrm else None, problem])
        return [{"items": part} for part in chunk(items, items_per_unit)]

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["items"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        o = self.options
        for item_id, image_path, depth_path, normals_path, problem in payload["items"]:
            if problem:
                yield Failed(item_id, problem)
                continue
            if o.normals and normals_path is None:
                yield Failed(item_id, f"unpaired: image {item_id!r} has no normals file")
                continue
            ann: dict[str, Any] = {"fov_deg": o.fov_deg}
            try:
                photo = read_bytes(image_path)
                ann["depth"] = decode_depth(read_bytes(depth_path), posixpath.splitext(depth_path)[1].lower(), o.depth_scale,
                                            self.ctx.image.max_pixels)
                if normals_path:
                    ann["normals"] = decode_normals(read_bytes(normals_path), posixpath.splitext(normals_path)[1].lower(),
                                                    self.ctx.image.max_pixels)
            except Exception as err:  # one bad file fails its item, never the unit
                yield Failed(item_id, reason_of(err))
                continue
            if o.fx is not None:
                h, w = ann["depth"].shape
                ann["intrinsics"] = (o.fx, o.fy, o.cx if o.cx is not None else (w - 1) / 2,
                                     o.cy if o.cy is not None else (h - 1) / 2)
            prov = {"image": posixpath.basename(image_path), "depth": posixpath.basename(depth_path)}
            if normals_path:
                prov["normals"] = posixpath.basename(normals_path)
            yield Item(item_id=item_id, source=self.ctx.dataset, images=[photo], annotations=ann, provenance=prov)
