"""3D objects → multiview sentences: real Duck.glb / BoxTextured.glb and generated meshes, rendered
offscreen (EGL or OSMesa, CPU), through `uvd.unit.run_unit` in-process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh

from uvd import codec
from uvd.config import BuildConfig, parse_model
from uvd.unit import make_source, run_unit

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = ROOT / "sample_data" / "objects"


def build(tmp: Path, root: Path, seed: int = 0, builder_args: dict | None = None,
          source_args: dict | None = None, out: str = "out") -> tuple[dict, list[dict], dict[str, str]]:
    """Run one unit; returns (stats, sentence rows, audit item_id → error or 'ok')."""
    cfg = parse_model(BuildConfig, {
        "out": str(tmp / out), "seed": seed,
        "datasets": [{"name": "objects", "source": "objaverse", "source_args": {"root": str(root), **(source_args or {})},
                      "builder": "multiview", "builder_args": builder_args or {}}],
    }, "test")
    ds = cfg.datasets[0]
    plan = make_source(cfg, ds).plan(ds.items_per_unit)
    assert len(plan) == 1
    stats = run_unit(cfg, "objects", "00000", plan[0], str(tmp / out))
    rows = pq.read_table(tmp / out / "sentences" / "objects" / "part-00000.parquet").to_pylist()
    audit = pq.read_table(tmp / out / "audit" / "objects" / "part-00000.parquet").to_pylist()
    return stats, rows, {a["item_id"]: (a["error"] or a["status"]) for a in audit}


def images(row: dict) -> list[np.ndarray]:
    return [codec.decode(b) for b in row["images"]]


def foreground(img: np.ndarray) -> np.ndarray:
    return (255 - img.astype(np.int16)).max(axis=2) > 30  # background is white


def coloured_sphere(center: tuple[float, float, float], scale: float) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=3)
    rng = np.random.default_rng(1)  # per-vertex colours make every azimuth look different
    m.visual.vertex_colors = np.c_[rng.integers(0, 200, (len(m.vertices), 3)), np.full(len(m.vertices), 255)]
    m.apply_scale(scale)
    m.apply_translation(center)
    return m


@pytest.fixture(scope="module")
def objects_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("objects")
    shutil.copy(OBJECTS / "Duck.glb", d / "Duck.glb")
    shutil.copy(OBJECTS / "BoxTextured.glb", d / "BoxTextured.glb")
    # Far from the origin and huge: normalisation must bring it back into view.
    coloured_sphere((5000.0, -300.0, 1e4), 250.0).export(d / "sphere_far.ply")
    # A scene graph: two instances of one box and a cylinder, each under its own transform.
    box = trimesh.creation.box((1.0, 0.4, 0.4))
    box.visual.face_colors = [200, 30, 30, 255]
    cyl = trimesh.creation.cylinder(radius=0.2, height=1.0)
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="a", geom_name="box", transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    scene.add_geometry(box, node_name="b", geom_name="box",
                       transform=trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0], [3, 1, 0]))
    scene.add_geometry(cyl, node_name="c", geom_name="cyl", transform=trimesh.transformations.translation_matrix([3, 0.5, 1]))
    scene.export(d / "graph.glb")
    trimesh.creation.annulus(r_min=0.3, r_max=0.6, height=0.3).export(d / "ring.obj")
    return d


@pytest.fixture(scope="module")
def built(objects_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict], dict[str, str]]:
    return build(tmp_path_factory.mktemp("build"), objects_dir)


def test_every_object_renders_one_window(built: tuple) -> None:
    stats, rows, audit = built
    assert audit == {k: "ok" for k in ("BoxTextured.glb", "Duck.glb", "graph.glb", "ring.obj", "sphere_far.ply")}
    assert stats["inputs"] == stats["ok"] == 5 and stats["sentences"] == 5
    for row in rows:
        assert (row["task"], row["layout"], row["num_images"]) == ("multiview", "sequence", 16)
        assert all(img.shape == (256, 256, 3) for img in images(row))


def test_object_centred_and_visible_in_every_view(built: tuple) -> None:
    for row in built[1]:
        item = json.loads(row["meta"])["item_id"]
        for k, img in enumerate(images(row)):
            fg = foreground(img)
            centre = fg[80:176, 80:176].mean()
            # the scene graph is three thin parts spread out: less of it covers the centre
            assert centre > (0.05 if item == "graph.glb" else 0.4), f"{item} view {k}: centre {centre:.2f}"
            ys, xs = np.nonzero(fg)
            # bounding box centred at the origin → its image is centred up to perspective
            assert abs((xs.min() + xs.max()) / 2 - 128) < 24 and abs((ys.min() + ys.max()) / 2 - 128) < 24
            assert fg.mean() < 0.98 or item == "BoxTextured.glb"  # the cube may fill the frame at r=1.5


def test_consecutive_views_differ(built: tuple) -> None:
    for row in built[1]:
        imgs = images(row)
        for a, b in zip(imgs, imgs[1:]):
            assert np.abs(a.astype(np.int16) - b).mean() > 1.0


def test_camera_recipe_in_meta(built: tuple) -> None:
    for row in built[1]:
        m = json.loads(row["meta"])
        assert 1.5 <= m["radius"] <= 2.2 and -45 <= m["elevation_deg"] <= 45
        az = m["azimuth_deg"]
        steps = [(b - a) % 360 for a, b in zip(az, az[1:])]
        assert np.allclose(steps, 15.0, atol=1e-6)
        assert [(i + 1) % 24 for i in m["view_indices"][:-1]] == m["view_indices"][1:]
        intr = m["intrinsics"]
        assert (intr["width"], intr["height"], intr["cx"], intr["cy"]) == (256, 256, 128.0, 128.0)
        for pose, a in zip(m["poses"], az):
            pose = np.array(pose)
            eye = pose[:3, 3]
            assert np.isclose(np.linalg.norm(eye), m["radius"], atol=1e-5)
            assert np.isclose(np.degrees(np.arcsin(eye[1] / m["radius"])), m["elevation_deg"], atol=1e-4)
            assert np.isclose(np.degrees(np.arctan2(eye[0], eye[2])) % 360, a, atol=1e-4)
            # the camera looks at the origin: its −Z axis points from the eye to (0, 0, 0)
            assert np.allclose(-pose[:3, 2], -eye / np.linalg.norm(eye), atol=1e-5)
            assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-5)


def test_normalisation_recorded(built: tuple) -> None:
    by_id = {json.loads(r["meta"])["item_id"]: json.loads(r["meta"]) for r in built[1]}
    far = by_id["sphere_far.ply"]["normalisation"]
    assert np.allclose(far["center"], [5000, -300, 1e4], atol=1.0) and np.isclose(far["scale"], 1 / 500, rtol=1e-2)
    graph = by_id["graph.glb"]["normalisation"]
    assert graph["instances"] == 3 and graph["faces"] == 2 * 12 + len(trimesh.creation.cylinder(0.2, 1.0).faces)


def test_same_seed_same_bytes_other_seed_other_cameras(objects_dir: Path, tmp_path: Path, built: tuple) -> None:
    again = build(tmp_path, objects_dir, out="a")[0]  # the cached renderer has drawn other objects since
    assert again["shard"]["sha256"] == built[0]["shard"]["sha256"]
    _, rows, _ = build(tmp_path, objects_dir, seed=1, out="c")
    cams0 = {json.loads(r["meta"])["item_id"]: (json.loads(r["meta"])["radius"], json.loads(r["meta"])["elevation_deg"])
             for r in built[1]}
    cams1 = {json.loads(r["meta"])["item_id"]: (json.loads(r["meta"])["radius"], json.loads(r["meta"])["elevation_deg"])
             for r in rows}
    assert all(cams0[k] != cams1[k] for k in cams0)
    duck0 = next(r for r in built[1] if json.loads(r["meta"])["item_id"] == "Duck.glb")
    duck1 = next(r for r in rows if json.loads(r["meta"])["item_id"] == "Duck.glb")
    assert duck0["images"][0] != duck1["images"][0]


def test_chunks_use_all_views(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(OBJECTS / "BoxTextured.glb", d / "box.glb")
    _, rows, audit = build(tmp_path, d, builder_args={"sentences": "chunks", "views_per_sentence": 8,
                                                      "start_azimuth": "zero"})
    assert audit == {"box.glb": "ok"}
    metas = sorted((json.loads(r["meta"]) for r in rows), key=lambda m: m["sentence_index"])
    assert [m["view_indices"] for m in metas] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert metas[0]["azimuth_deg"][0] == 0.0 and metas[2]["azimuth_deg"][-1] == 345.0
    assert len({r["sentence_id"] for r in rows}) == 3


def test_osmesa_renders_like_egl(tmp_path: Path) -> None:
    """Both headless platforms work; each runs in a fresh process (the platform is fixed at import)."""
    script = (
        "import sys, numpy as np, trimesh\n"
        "from renderers.mesh_normalise import prepare\n"
        "from renderers.mesh_render import orbit, render_views\n"
        f"obj = prepare(trimesh.load_scene({str(OBJECTS / 'Duck.glb')!r}))\n"
        "img = render_views(obj, orbit(1, 1.8, 20.0), platform=sys.argv[1])[0]\n"
        "np.save(sys.argv[2], img)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    out = {}
    for platform in ("egl", "osmesa"):
        path = tmp_path / f"{platform}.npy"
        subprocess.run([sys.executable, "-c", script, platform, str(path)], check=True, cwd=ROOT, env=env, timeout=120)
        out[platform] = np.load(path)
    assert foreground(out["egl"]).mean() > 0.05
    assert np.abs(out["egl"].astype(np.int16) - out["osmesa"]).mean() < 3.0


def test_platform_fixed_once_opengl_is_imported(built: tuple) -> None:
    from renderers.mesh_render import choose_platform

    current = os.environ["PYOPENGL_PLATFORM"]
    assert choose_platform("auto") == current
    other = "osmesa" if current == "egl" else "egl"
    with pytest.raises(RuntimeError, match="already imported"):
        choose_platform(other)
