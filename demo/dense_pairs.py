"""Demo inputs for dense annotations and low-level pairs and their contact sheets.

A small ray-cast scene (floor, back wall, spheres) gives a photo whose depth, normals and
semantic labels are exact, written in the formats the sources read (16-bit PNG depth in
millimetres, PNG label maps). The bundled real photos feed the generated pairs; a folder of
rainy/clean pairs feeds the `paired` source. Each set carries one bad item that must end in
the audit. `python -m demo.dense_pairs docs/tasks` redraws docs/tasks/<task>.png.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from renderers import degrade
from renderers.depth import default_intrinsics
from demo.samples import samples_dir
from uvd import codec

CLASSES = {"floor": 1, "wall": 2, "ball": 3, "box": 4}  # display ids of the shared palette


def scene(seed: int, height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo RGB uint8, depth metres float32, labels int32) of floor + wall + 2–3 spheres."""
    rng = np.random.default_rng(seed)
    fx, fy, cx, cy = default_intrinsics(width, height, 60.0)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)  # z = 1: t is the depth
    t = np.full(u.shape, np.inf)
    normal = np.zeros(u.shape + (3,))
    labels = np.zeros(u.shape, np.int32)
    colour = np.zeros(u.shape + (3,))
    wall_z, floor_y = rng.uniform(5.0, 8.0), rng.uniform(0.8, 1.4)
    # Planes n·P = -d with the normal n facing the camera: the wall z = wall_z, the floor y = floor_y.
    planes = [(np.array([0.0, 0.0, -1.0]), wall_z, "wall", (0.75, 0.7, 0.6)),
              (np.array([0.0, -1.0, 0.0]), floor_y, "floor", (0.45, 0.35, 0.25))]
    for n, d, name, rgb in planes:
        with np.errstate(divide="ignore", invalid="ignore"):
            tp = -d / (rays @ n)
        hit = (tp > 0) & (tp < t)
        t[hit], labels[hit] = tp[hit], CLASSES[name]
        normal[hit], colour[hit] = n, rgb
    for _ in range(int(rng.integers(2, 4))):
        c = np.array([rng.uniform(-1.5, 1.5), 0.0, rng.uniform(2.5, 4.5)])
        r = rng.uniform(0.35, 0.7)
        c[1] = floor_y - r  # resting on the floor
        b = rays @ c
        rr = (rays * rays).sum(-1)
        disc = b * b - rr * (c @ c - r * r)
        ts = (b - np.sqrt(np.maximum(disc, 0))) / rr
        hit = (disc > 0) & (ts > 0) & (ts < t)
        p = rays * ts[..., None]
        t[hit], labels[hit] = ts[hit], CLASSES["ball"]
        normal[hit] = (p[hit] - c) / r
        colour[hit] = rng.uniform(0.2, 0.95, 3)
    light = np.array([-0.4, -0.8, -0.45]) / np.linalg.norm([-0.4, -0.8, -0.45])
    shade = 0.25 + 0.75 * np.clip(normal @ light, 0, 1)
    photo = np.clip(colour * shade[..., None] * 255 + rng.normal(0, 3, colour.shape), 0, 255).astype(np.uint8)
    depth = np.where(np.isfinite(t), t, 0.0).astype(np.float32)
    depth[depth > 10.0] = 0.0  # beyond the sensor's range: no measurement
    return photo, depth, labels


def _write_scenes(root: Path, n: int) -> None:
    for sub in ("rgb", "depth", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo, depth, labels = scene(i)
        (root / "rgb" / f"scene_{i:02d}.jpg").write_bytes(codec.encode(photo))
        cv2.imwrite(str(root / "depth" / f"scene_{i:02d}.png"), np.rint(depth * 1000).astype(np.uint16))
        cv2.imwrite(str(root / "labels" / f"scene_{i:02d}.png"), labels.astype(np.uint8))
    # the bad ones: a label map of the wrong size, a photo without depth or labels
    _, _, labels = scene(99)
    cv2.imwrite(str(root / "labels" / f"scene_{0:02d}.png"), labels[::2, ::2].astype(np.uint8))
    (root / "rgb" / "lonely.jpg").write_bytes(codec.encode(scene(98)[0]))


def _write_rain_pairs(root: Path) -> None:
    (root / "rainy").mkdir(parents=True, exist_ok=True)
    (root / "clean").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(sorted(samples_dir().glob("images/*.jpg"))):
        clean = cv2.imread(str(f))[:, :, ::-1]
        (root / "clean" / f.name).write_bytes(f.read_bytes())
        (root / "rainy" / f"{f.stem}.png").write_bytes(codec.encode(degrade.rain(clean, np.random.default_rng(i)), lossless=True))
    (root / "rainy" / "no_partner.png").write_bytes(codec.encode(np.zeros((64, 64, 3), np.uint8), lossless=True))


GENERATED = ("colorization", "inpainting", "edges", "denoise", "lowlight", "derain", "deblur")


def dense_pair_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """DEMO_INPUTS step: dense scenes, real photos for generated pairs, rainy/clean pairs."""
    base = workdir / "annotations_b"
    _write_scenes(base / "scenes", 9)
    _write_rain_pairs(base / "rain")
    photos = base / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for f in sorted(samples_dir().glob("images/*.jpg")) + sorted(samples_dir().glob("coco/*.jpg")):
        shutil.copy(f, photos / f.name)
    scenes = base / "scenes"
    depth_args = {"images": str(scenes / "rgb"), "depth": str(scenes / "depth"), "fov_deg": 60.0}
    pairs = {"pairs": 4, "min_pairs": 1}
    datasets: list[dict[str, Any]] = [
        {"name": "semantic_segmentation", "source": "segmentation",
         "source_args": {"images": str(scenes / "rgb"), "labels": str(scenes / "labels")},
         "builder": "pairs", "builder_args": {"task": "semantic_segmentation", **pairs}},
        {"name": "depth", "source": "depth", "source_args": depth_args,
         "builder": "pairs", "builder_args": {"task": "depth", **pairs}},
        {"name": "normals", "source": "depth", "source_args": depth_args,
         "builder": "pairs", "builder_args": {"task": "normals", **pairs}},
        {"name": "dense_tuple", "source": "depth", "source_args": depth_args,
         "builder": "tuple", "builder_args": {"tasks": ["depth", "normals", "edges"]}},
        {"name": "derain_real", "source": "paired",
         "source_args": {"inputs": str(base / "rain" / "rainy"), "targets": str(base / "rain" / "clean"), "task": "derain"},
         "builder": "pairs", "builder_args": {"task": "derain", **pairs}},
    ]
    for task in GENERATED:
        datasets.append({"name": task, "source": "image_folder", "source_args": {"root": str(photos), "labels": False},
                         "builder": "pairs", "builder_args": {"task": task, **pairs}})
    return datasets


def contact_sheets(dest: Path) -> list[Path]:
    """Build the demo datasets in-process and draw the first sentence of each as dest/<name>.png."""
    from uvd.config import BuildConfig
    from uvd.shard_summary import contact_sheet
    from uvd.runner import build

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        datasets = dense_pair_inputs(Path(tmp) / "inputs", stack)
        cfg = BuildConfig.model_validate({"out": str(Path(tmp) / "out"), "seed": 0, "datasets": datasets})
        build(cfg, use_ray=False)
        for ds in cfg.datasets:
            path = dest / f"{ds.key}.png"
            contact_sheet(str(Path(cfg.out) / "sentences" / ds.key), 0, str(path))
            written.append(path)
    return written


if __name__ == "__main__":
    from uvd.cli.plugins import register_builtin

    register_builtin()
    for p in contact_sheets(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tasks")):
        print(p)
