"""The `objaverse` source: Objaverse layout, uid lists, category files, the hashed train/test split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import trimesh

from uvd.api import BuildContext
from uvd.errors import ConfigError
from uvd.config import parse_model
from uvd.records import Failed, Item
from sources.objaverse import ObjaverseOptions, ObjaverseSource, split_hash

UIDS = [f"{i:032x}" for i in range(0, 60 * 7919, 7919)]  # 60 hex uids, like Objaverse's


def source(**options: object) -> ObjaverseSource:
    return ObjaverseSource(parse_model(ObjaverseOptions, options, "test"), BuildContext(dataset="objaverse"))


def planned(src: ObjaverseSource, per_unit: int = 1000) -> list[list]:
    return [e for unit in src.plan(per_unit) for e in unit["objects"]]


@pytest.fixture(scope="module")
def objaverse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("objaverse")
    glb = trimesh.creation.box().export(file_type="glb")
    for i, uid in enumerate(UIDS):
        folder = root / "glbs" / f"000-{i // 25:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{uid}.glb").write_bytes(glb)
    (root / "glbs" / "000-000" / "notes.txt").write_text("not a mesh")
    return root


def test_objaverse_layout_ids_are_uids(objaverse_root: Path) -> None:
    entries = planned(source(root=str(objaverse_root)))
    assert [e[0] for e in entries] == sorted(UIDS)
    assert all(Path(e[1]).name == f"{e[0]}.glb" for e in entries)
    units = source(root=str(objaverse_root)).plan(25)
    assert [len(u["objects"]) for u in units] == [25, 25, 10]


def test_split_is_disjoint_deterministic_and_sized(objaverse_root: Path) -> None:
    train = [e[0] for e in planned(source(root=str(objaverse_root), split="train", test_fraction=0.25))]
    test = [e[0] for e in planned(source(root=str(objaverse_root), split="test", test_fraction=0.25))]
    assert set(train).isdisjoint(test) and sorted(train + test) == sorted(UIDS)
    assert all(split_hash(u, "uvd-objaverse-split-v1") < 0.25 for u in test)
    assert 5 <= len(test) <= 25  # 15 expected of 60
    small = [e[0] for e in planned(source(root=str(objaverse_root), split="train", test_fraction=0.25, train_size=10))]
    assert len(small) == 10 and set(small) <= set(train)
    # the split does not depend on which other objects exist: a sub-list keeps its sides
    sub = UIDS[::3]
    sub_test = [e[0] for e in planned(source(root=str(objaverse_root), uids=sub, split="test", test_fraction=0.25))]
    assert set(sub_test) == set(test) & set(sub)
    salted = [e[0] for e in planned(source(root=str(objaverse_root), split="test", test_fraction=0.25, split_salt="x"))]
    assert salted != test


def test_uid_file_and_categories(objaverse_root: Path, tmp_path: Path) -> None:
    (tmp_path / "uids.txt").write_text("\n".join(UIDS[:5] + ["f" * 32]) + "\n")
    entries = planned(source(root=str(objaverse_root), uid_file=str(tmp_path / "uids.txt")))
    assert sorted(e[0] for e in entries) == sorted(UIDS[:5] + ["f" * 32])
    cats = {"chair": UIDS[:3], "mug": UIDS[3:5] + ["e" * 32], "lamp": UIDS[10:12]}
    (tmp_path / "lvis.json").write_text(json.dumps(cats))
    src = source(root=str(objaverse_root), categories_file=str(tmp_path / "lvis.json"), categories=["chair", "mug"])
    entries = planned(src)
    assert {e[0]: e[2] for e in entries} == {**{u: "chair" for u in UIDS[:3]}, **{u: "mug" for u in UIDS[3:5]}, "e" * 32: "mug"}
    items = {r.item_id: r for unit in src.plan(1000) for r in src.read(unit)}
    assert isinstance(items["e" * 32], Failed) and items["e" * 32].reason.startswith("missing:")
    chair = items[UIDS[0]]
    assert isinstance(chair, Item) and chair.label == "chair" and chair.provenance["category"] == "chair"
    assert isinstance(chair.mesh, trimesh.Scene) and len(chair.mesh.geometry) == 1
    assert chair.provenance["path"] == f"glbs/000-000/{UIDS[0]}.glb"


def test_folder_uids_match_with_or_without_suffix(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    trimesh.creation.box().export(tmp_path / "a" / "box.obj")
    trimesh.creation.icosphere().export(tmp_path / "ball.ply")
    assert [e[0] for e in planned(source(root=str(tmp_path)))] == ["a/box.obj", "ball.ply"]
    assert [e[0] for e in planned(source(root=str(tmp_path), uids=["a/box"]))] == ["a/box.obj"]


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path does not exist"):
        source(root=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="categories_file"):
        source(root=str(tmp_path), categories=["chair"])
    with pytest.raises(ConfigError, match="unknown key"):
        source(root=str(tmp_path), spilt="train")
