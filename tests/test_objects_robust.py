"""Bad 3D inputs end in the audit with a reason; the unit goes on and nothing is lost."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh

from uvd.config import BuildConfig, parse_model
from uvd.errors import BadInput
from uvd.unit import make_source, run_unit
from renderers.mesh_normalise import prepare

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = ROOT / "sample_data" / "objects"


def run(tmp: Path, root: Path, builder_args: dict | None = None, source_args: dict | None = None) -> tuple[dict, dict[str, str]]:
    cfg = parse_model(BuildConfig, {"out": str(tmp / "out"), "datasets": [
        {"name": "objects", "source": "objaverse", "source_args": {"root": str(root), **(source_args or {})},
         "builder": "multiview", "builder_args": {"views": 4, "views_per_sentence": 4, **(builder_args or {})}}]}, "t")
    ds = cfg.datasets[0]
    stats = run_unit(cfg, "objects", "00000", make_source(cfg, ds).plan(100)[0], str(tmp / "out"))
    audit = pq.read_table(tmp / "out" / "audit" / "objects" / "part-00000.parquet").to_pylist()
    return stats, {a["item_id"]: (a["error"] or a["status"]) for a in audit}


def gltf_with_external_texture(folder: Path, name: str, keep_texture: bool) -> None:
    """BoxTextured re-exported as .gltf whose image is a separate PNG file next to it."""
    files = trimesh.load_scene(OBJECTS / "BoxTextured.glb").export(file_type="gltf")
    doc = json.loads(files.pop("model.gltf"))
    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    png = files[doc["buffers"][view["buffer"]]["uri"]][view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    assert png.startswith(b"\x89PNG")
    doc["images"] = [{"uri": f"{name}.png"}]
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    if keep_texture:
        (folder / f"{name}.png").write_bytes(png)
    (folder / f"{name}.gltf").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    shutil.copy(OBJECTS / "Duck.glb", d / "good_duck.glb")
    (d / "broken.glb").write_bytes(b"glTF" + b"\x00garbage" * 20)
    (d / "truncated.glb").write_bytes((OBJECTS / "Duck.glb").read_bytes()[:5000])
    (d / "zero.obj").write_bytes(b"")
    (d / "text.ply").write_text("this is not a ply file\n")
    trimesh.PointCloud(np.random.default_rng(0).random((200, 3))).export(d / "points.ply")
    (d / "no_faces.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    trimesh.creation.icosphere(subdivisions=4).export(d / "dense.glb")  # 5120 faces
    # every vertex in one place: no extent at all
    trimesh.Trimesh(vertices=np.zeros((3, 3)), faces=[[0, 1, 2]], process=False).export(d / "point_like.ply")
    # a real shape, but 1e-9 wide at an offset of 1e3: float32 cannot hold it
    tiny = trimesh.creation.box((1e-9, 1e-9, 1e-9))
    tiny.apply_translation((1e3, 0, 0))
    tiny.export(d / "tiny_far.ply")
    gltf_with_external_texture(d, "textured", keep_texture=True)
    gltf_with_external_texture(d, "untextured", keep_texture=False)
    return d


def test_bad_objects_are_audited_with_reasons(bad_dir: Path, tmp_path: Path) -> None:
    stats, audit = run(tmp_path, bad_dir, builder_args={"max_faces": 5000})
    assert stats["inputs"] == stats["ok"] + stats["failed"] == len(audit) == 12
    kinds = {k: v.split(":", 1)[0] for k, v in audit.items()}
    assert kinds == {
        "good_duck.glb": "ok", "textured.gltf": "ok",
        "broken.glb": "decode", "truncated.glb": "decode", "text.ply": "decode",
        "zero.obj": "empty", "no_faces.obj": kinds["no_faces.obj"],
        "points.ply": "point_cloud", "dense.glb": "too_large",
        "point_like.ply": "degenerate", "tiny_far.ply": "degenerate", "untextured.gltf": "texture",
    }
    assert kinds["no_faces.obj"] in ("empty", "point_cloud")  # trimesh reads bare vertices as points
    assert "untextured.png" in audit["untextured.gltf"]
    assert "5120 triangles" in audit["dense.glb"]
    assert stats["sentences"] == 2


def test_missing_texture_can_render_untextured(bad_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for f in bad_dir.iterdir():
        if f.name.startswith("untextured") or f.suffix == ".bin":
            shutil.copy(f, d / f.name)
    _, audit = run(tmp_path, d, source_args={"missing_textures": "ignore"})
    assert audit == {"untextured.gltf": "ok"}
    rows = pq.read_table(tmp_path / "out" / "sentences" / "objects" / "part-00000.parquet").to_pylist()
    assert json.loads(rows[0]["meta"])["missing_files"] == ["untextured.png"]


def test_render_time_is_bounded(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(OBJECTS / "Duck.glb", d / "duck.glb")
    stats, audit = run(tmp_path, d, builder_args={"max_render_seconds": 1e-9})
    assert audit["duck.glb"].startswith("timeout: rendering exceeded")
    assert stats["failed"] == 1 and stats["sentences"] == 0


def test_file_size_limit_refuses_before_parsing(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(OBJECTS / "Duck.glb", d / "duck.glb")
    _, audit = run(tmp_path, d, source_args={"max_file_mb": 0.01})
    assert audit["duck.glb"].startswith("too_large:")


def test_prepare_flattens_scene_graph_into_unit_cube() -> None:
    box = trimesh.creation.box((2.0, 1.0, 1.0))
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="left", geom_name="box", transform=trimesh.transformations.translation_matrix([10, 0, 0]))
    # a second instance of the same geometry (not a copy): pyrender draws it with two poses
    scene.graph.update(frame_to="right", frame_from=scene.graph.base_frame, geometry="box",
                       matrix=trimesh.transformations.translation_matrix([14, 0, 0]))
    obj = prepare(scene)
    assert obj.faces == 24 and len(obj.poses["box"]) == 2
    corners = np.concatenate([trimesh.transform_points(box.vertices, p) for p in obj.poses["box"]])
    assert np.allclose(corners.min(0), [-0.5, -1 / 12, -1 / 12]) and np.allclose(corners.max(0), [0.5, 1 / 12, 1 / 12])
    with pytest.raises(BadInput, match="too_large"):
        prepare(scene, max_faces=23)
