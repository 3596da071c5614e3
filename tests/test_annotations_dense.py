"""Dense annotations: depth and normals renderers on known geometry, the segmentation and depth
sources on files in their real formats, and builds through run_unit with the `pairs` builder."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from renderers.depth import colour_depth, colour_normals, default_intrinsics, normals_from_depth
from renderers.palette import PALETTE
from sentence_builders import generated_tasks as gt
from uvd import codec
from uvd.api import BuildContext
from uvd.config import BuildConfig
from uvd.errors import BadInput, ConfigError
from conftest import build_dataset
from uvd.unit import make_source

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def run_all(tmp_path: Path, dataset: dict, seed: int = 3) -> tuple[list[dict], dict[str, dict], Path]:
    return build_dataset(tmp_path, dataset, seed)


def plane_depth(h: int, w: int, normal_cam: np.ndarray, dist: float, intr: tuple) -> np.ndarray:
    """Depth (z) of the plane n·P = dist seen through a pinhole: z = dist / (n·ray)."""
    fx, fy, cx, cy = intr
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    return (dist / (rays @ normal_cam)).astype(np.float32)


# --- renderers ---------------------------------------------------------------------------------

def test_fronto_parallel_plane_is_facing_blue():
    intr = default_intrinsics(64, 48)
    n = normals_from_depth(np.full((48, 64), 2.5, np.float32), intr)
    assert np.allclose(n[1:-1, 1:-1], [0.0, 0.0, 1.0], atol=1e-6)
    assert (colour_normals(n)[1:-1, 1:-1] == [128, 128, 255]).all()


@pytest.mark.parametrize("normal", [(0.4, -0.3, -0.866), (-0.6, 0.2, -0.77), (0.0, 0.7, -0.71)])
def test_tilted_plane_normals_are_recovered(normal):
    n_cam = np.asarray(normal) / np.linalg.norm(normal)
    intr = (120.0, 110.0, 40.0, 30.0)
    d = plane_depth(60, 80, n_cam, -3.0, intr)  # dist < 0 with n_z < 0: the plane lies in front
    assert (d > 0).all()
    got = normals_from_depth(d, intr)
    expect = n_cam * [1, -1, -1]  # viewer frame: y up, z towards the camera
    assert np.allclose(got[1:-1, 1:-1], expect, atol=1e-4)
    rgb = colour_normals(got)
    assert np.abs(rgb[30, 40].astype(int) - np.rint((expect + 1) / 2 * 255)).max() <= 1


def test_invalid_depth_gives_black_normals_around_holes():
    d = np.full((20, 20), 1.0, np.float32)
    d[10, 10] = 0
    rgb = colour_normals(normals_from_depth(d, default_intrinsics(20, 20)))
    assert (rgb[9:12, 9:12] == 0).all() and (rgb[5, 5] == [128, 128, 255]).all()


def test_depth_near_is_bright_with_percentile_range_and_black_invalid():
    d = np.tile(np.linspace(1.0, 10.0, 100, dtype=np.float32), (10, 1))
    d[:, :3] = 0  # invalid
    d[:, 3] = np.nan
    g = colour_depth(d)[..., 0].astype(int)
    assert (g[:, :4] == 0).all()
    assert (np.diff(g[0, 4:]) <= 0).all()  # farther → darker
    lo, hi = np.percentile(d[0, 4:], [2, 98])
    assert g[0, 4] == 255 and g[0, -1] == 32  # clipped at both percentile ends; far is dark grey, not black
    mid = 44
    t = (d[0, mid] - lo) / (hi - lo)
    assert abs(g[0, mid] - (32 + (1 - t) * 223)) <= 0.5
    assert (colour_depth(d, colormap="inferno")[:, :4] == 0).all()


# --- segmentation source ---------------------------------------------------------------------

def _write_seg(root: Path, name: str, photo: np.ndarray, labels: np.ndarray, palette_png: bool = False) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "images" / f"{name}.jpg").write_bytes(codec.encode(photo))
    im = Image.fromarray(labels.astype(np.uint8), mode="L")
    if palette_png:
        im = im.convert("P")
        im.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    im.save(root / "labels" / f"{name}.png")


def _stripes(h: int, w: int, classes: list[int]) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    for i, c in enumerate(classes):
        lab[:, i * w // len(classes):(i + 1) * w // len(classes)] = c
    return lab


def test_label_maps_resize_without_blending_and_bad_ones_end_in_the_audit(tmp_path):
    root = tmp_path / "ade"
    photo = cv2.imread(str(SAMPLES / "coco" / "000000000785.jpg"))[:, :, ::-1]
    h, w = photo.shape[:2]
    _write_seg(root, "ok_a", photo, _stripes(h, w, [0, 3, 7, 255]))
    _write_seg(root, "ok_b", photo, _stripes(h, w, [12, 255, 3]), palette_png=True)
    _write_seg(root, "wrong_size", photo, _stripes(h // 2, w // 2, [3, 7]))
    (root / "images" / "no_label.jpg").write_bytes(codec.encode(photo))
    rows, audit, _ = run_all(tmp_path, {
        "name": "ade", "source": "segmentation",
        "source_args": {"images": str(root / "images"), "labels": str(root / "labels")},
        "builder": "pairs", "builder_args": {"task": "semantic_segmentation", "pairs": 8, "min_pairs": 2}})
    assert audit["wrong_size"]["status"] == "failed" and audit["wrong_size"]["reason"] == "size_mismatch"
    assert f"{w // 2}x{h // 2}" in audit["wrong_size"]["error"] and f"{w}x{h}" in audit["wrong_size"]["error"]
    assert audit["no_label"]["reason"] == "unpaired"
    assert audit["ok_a"]["status"] == audit["ok_b"]["status"] == "ok"
    assert len(rows) == 1 and rows[0]["task"] == "semantic_segmentation" and rows[0]["num_images"] == 4
    seg_a, seg_b = codec.decode(rows[0]["images"][1]), codec.decode(rows[0]["images"][3])
    assert rows[0]["images"][1][:4] == b"\x89PNG"  # rendered maps stored losslessly
    for seg, classes in ((seg_a, [0, 3, 7]), (seg_b, [0, 12, 3])):  # 255 = ignore → black (entry 0)
        colours = {tuple(c) for c in seg.reshape(-1, 3)}
        assert colours == {tuple(PALETTE[c]) for c in classes}  # nearest: no blended colours


def test_label_map_of_wrong_size_is_bad_input_in_the_task():
    ctx = BuildContext(dataset="t")
    from uvd.records import Item
    item = Item("x", "t", images=[codec.encode(np.zeros((40, 60, 3), np.uint8))],
                annotations={"label_map": np.zeros((40, 50), np.int32)})
    with pytest.raises(BadInput, match="size_mismatch: label map is 50x40 but its image is 60x40"):
        gt.semantic_segmentation(item, ctx, np.random.default_rng(0))


# --- depth source ----------------------------------------------------------------------------

def test_depth_source_png_mm_and_npy_metres_with_normals_from_depth(tmp_path):
    root = tmp_path / "nyu"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    h, w = 120, 160
    intr = default_intrinsics(w, h, 60.0)
    photo = np.full((h, w, 3), 90, np.uint8)
    plane = plane_depth(h, w, np.array([0.0, 0.0, -1.0]), -2.0, intr)  # a wall 2 m away
    ramp = np.tile(np.linspace(1.0, 4.0, w, dtype=np.float32), (h, 1))
    ramp[:10] = 0  # no measurement on the top rows
    for name, d in (("wall", plane), ("ramp", ramp)):
        (root / "rgb" / f"{name}.png").write_bytes(codec.encode(photo, lossless=True))
    cv2.imwrite(str(root / "depth" / "wall.png"), np.rint(plane * 1000).astype(np.uint16))
    np.save(root / "depth" / "ramp.npy", ramp)
    np.save(root / "depth" / "orphan.npy", ramp)
    (root / "rgb" / "small.png").write_bytes(codec.encode(photo[:60], lossless=True))
    np.save(root / "depth" / "small.npy", ramp)
    args = {"images": str(root / "rgb"), "depth": str(root / "depth"), "fov_deg": 60.0}
    ctx = BuildContext(dataset="nyu")
    cfg = BuildConfig.model_validate({"datasets": [{"source": "depth", "source_args": args}]})
    src = make_source(cfg, cfg.datasets[0])
    items = {getattr(i, "item_id"): i for p in src.plan(10) for i in src.read(p)}
    assert items["orphan"].reason.startswith("unpaired: depth map 'orphan' has no image")
    assert items["wall"].annotations["depth"].dtype == np.float32
    assert abs(float(items["wall"].annotations["depth"][60, 80]) - 2.0) < 1e-3
    rng = np.random.default_rng(0)
    (_, _), (n_rgb, lossless) = gt.normals(items["wall"], ctx, rng)
    assert lossless and n_rgb.shape == (256, 256, 3)
    assert np.abs(n_rgb[10:-10, 10:-10].astype(int) - [128, 128, 255]).max() <= 2  # mm rounding
    (_, _), (d_rgb, _) = gt.depth(items["ramp"], ctx, rng)
    # center_crop keeps the middle 120 columns of the (resized) ramp: near (left) bright → far dark
    row = d_rgb[200, :, 0].astype(int)
    assert row[0] > 200 and row[-1] < 60 and (np.diff(row) <= 0).all()
    assert (d_rgb[:15] == 0).all()  # invalid rows → black (10 of 120 rows ≈ 21 px after resize)
    with pytest.raises(BadInput, match="size_mismatch"):
        gt.depth(items["small"], ctx, rng)


def test_depth_source_refuses_a_missing_folder(tmp_path):
    cfg = BuildConfig.model_validate({"datasets": [{"source": "depth", "source_args": {
        "images": str(tmp_path / "nope"), "depth": str(tmp_path)}}]})
    with pytest.raises(ConfigError, match="does not exist"):
        make_source(cfg, cfg.datasets[0])


def test_depth_and_normals_build_deterministically(tmp_path):
    root = tmp_path / "d"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i, f in enumerate(sorted((SAMPLES / "images").glob("*.jpg"))[:3]):
        img = cv2.imread(str(f))
        h, w = img.shape[:2]
        (root / "rgb" / f.name).write_bytes(f.read_bytes())
        d = (np.add.outer(np.arange(h), np.arange(w)) + 500 + 100 * i).astype(np.uint16)
        cv2.imwrite(str(root / "depth" / f"{f.stem}.png"), d)
    ds = {"name": "dd", "source": "depth", "source_args": {"images": str(root / "rgb"), "depth": str(root / "depth")},
          "builder": "tuple", "builder_args": {"tasks": ["depth", "normals"], "min_images": 3}}
    rows1, audit, out1 = run_all(tmp_path / "a", ds)
    rows2, _, _ = run_all(tmp_path / "b", ds)
    assert all(r["status"] == "ok" for r in audit.values()) and len(rows1) == 3
    assert {r["task"] for r in rows1} == {"depth+normals"}
    assert [r["images"] for r in rows1] == [r["images"] for r in rows2]


def test_ground_truth_normals_win_and_bad_maps_end_in_the_audit(tmp_path):
    root = tmp_path / "gt"
    for sub in ("rgb", "depth", "normals"):
        (root / sub).mkdir(parents=True)
    photo = np.full((48, 64, 3), 120, np.uint8)
    for name in ("a", "rgb_depth", "junk"):
        (root / "rgb" / f"{name}.png").write_bytes(codec.encode(photo, lossless=True))
        cv2.imwrite(str(root / "normals" / f"{name}.png"), np.full((48, 64, 3), (128, 128, 255), np.uint8))  # BGR of +x
    cv2.imwrite(str(root / "depth" / "a.png"), np.full((48, 64), 1500, np.uint16))
    cv2.imwrite(str(root / "depth" / "rgb_depth.png"), np.full((48, 64, 3), 9, np.uint8))
    (root / "depth" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rows, audit, _ = run_all(tmp_path, {
        "name": "gt", "source": "depth",
        "source_args": {"images": str(root / "rgb"), "depth": str(root / "depth"), "normals": str(root / "normals")},
        "builder": "pairs", "builder_args": {"task": "normals", "min_pairs": 1}})
    assert audit["a"]["status"] == "ok"
    assert audit["rgb_depth"]["reason"] == "depth" and "single-channel" in audit["rgb_depth"]["error"]
    assert audit["junk"]["reason"] == "decode"
    n = codec.decode(rows[0]["images"][1])
    assert (n == [255, 128, 128]).all()  # the file's normals (+x), not the wall computed from depth


def test_colour_label_maps_are_refused(tmp_path):
    root = tmp_path / "seg"
    _write_seg(root, "ok", np.zeros((30, 40, 3), np.uint8), np.ones((30, 40), np.uint8))
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "labels" / "ok.png")
    rows, audit, _ = run_all(tmp_path, {"name": "s", "source": "segmentation",
                                        "source_args": {"images": str(root / "images"), "labels": str(root / "labels")},
                                        "builder": "pairs", "builder_args": {"task": "semantic_segmentation"}})
    assert audit["ok"]["reason"] == "label" and "mode RGB" in audit["ok"]["error"] and not rows
