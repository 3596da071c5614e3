"""`pairs` with `grouping: dataset`: groups from a fresh permutation of the whole dataset per epoch."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.planned_build import planned_build


def jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 20, (24, 24, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def imagenet_folder(root: Path, classes: int = 8, per_class: int = 40) -> Path:
    """ImageNet's layout: one sub-folder per class (synset), JPEG files inside."""
    for c in range(classes):
        d = root / f"n{c:08d}"
        d.mkdir(parents=True)
        for i in range(per_class):
            (d / f"n{c:08d}_{i:04d}.JPEG").write_bytes(jpeg((30 * c, 255 - 30 * c, 120), 1000 * c + i))
    return root


def dataset(root: Path, **builder_args) -> dict:
    return {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "suffixes": [".JPEG"]},
            "builder": "pairs", "builder_args": {"task": "colorization", **builder_args}, "items_per_unit": 64}


def by_epoch(rows: list[dict]) -> dict[int, list[list[str]]]:
    out: dict[int, list[list[str]]] = {}
    for r in rows:
        meta = json.loads(r["meta"])
        out.setdefault(meta.get("epoch", 0), []).append(meta["item_ids"])
    return out


def test_an_imagenet_folder_mixes_classes_as_sampling_without_replacement(tmp_path: Path) -> None:
    root = imagenet_folder(tmp_path / "imagenet")
    rows, audit, payloads = planned_build(tmp_path, dataset(root, pairs=8))
    epochs = by_epoch(rows)
    assert sorted(epochs) == [0, 1]  # colorization: LVM's 2 epochs
    everyone = sorted(f"n{c:08d}/n{c:08d}_{i:04d}.JPEG" for c in range(8) for i in range(40))
    for groups in epochs.values():
        assert len(groups) == 40 and all(len(g) == 8 for g in groups)
        assert sorted(i for g in groups for i in g) == everyone  # each item once per epoch
    assert epochs[0] != epochs[1]
    classes = [len({i.split("/")[0] for i in g}) for gs in epochs.values() for g in gs]
    # 8 draws without replacement from 8 classes × 40: E[distinct classes] = 8·(1 − C(280,8)/C(320,8)) ≈ 5.3;
    # a single-class sentence has probability ~1e-7 (grouping inside sorted units gave only those)
    expected = 8 * (1 - np.prod([(280 - k) / (320 - k) for k in range(8)]))
    assert classes.count(1) == 0
    assert abs(np.mean(classes) - expected) < 0.5, (np.mean(classes), expected)
    assert len(audit) == 2 * 320 and all(r["status"] == "ok" for r in audit)  # one row per item and epoch
    assert len(payloads) == 2 * 5  # 8 groups of 8 per unit of 64


def test_remainder_is_left_out_once_per_epoch_and_audited(tmp_path: Path) -> None:
    root = imagenet_folder(tmp_path / "imagenet", classes=3, per_class=7)  # 21 items, groups of 4: 1 over
    rows, audit, _ = planned_build(tmp_path, dataset(root, pairs=4, epochs=3))
    epochs = by_epoch(rows)
    left_out = [r for r in audit if r["status"] == "failed"]
    assert [len(epochs[e]) for e in range(3)] == [5, 5, 5]
    assert len(left_out) == 3 and {r["reason"] for r in left_out} == {"remainder"}
    assert "epoch 0" in left_out[0]["error"] and "LVM" in left_out[0]["error"]
    assert {r["item_id"] for r in left_out} == {"n00000002/n00000002_0006.JPEG"}  # LVM's: the last item
    _, fresh, _ = planned_build(tmp_path, dataset(root, pairs=4, epochs=3, remainder="fresh"), out_name="fresh")
    assert len({r["item_id"] for r in fresh if r["status"] == "failed"}) > 1  # a random one each epoch
    for e in range(3):
        used = [i for g in epochs[e] for i in g]
        assert len(used) == len(set(used)) == 20
    assert len(audit) == 3 * 21


def test_same_shards_whatever_the_unit_order_and_a_new_seed_draws_new_groups(tmp_path: Path) -> None:
    root = imagenet_folder(tmp_path / "imagenet", classes=4, per_class=10)
    a, _, pa = planned_build(tmp_path, dataset(root, pairs=4), out_name="a")
    b, _, pb = planned_build(tmp_path, dataset(root, pairs=4), reverse=True, out_name="b")
    assert pa == pb
    key = lambda r: r["sentence_id"]  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)
    c, _, _ = planned_build(tmp_path, dataset(root, pairs=4), seed=1, out_name="c")
    assert by_epoch(c) != by_epoch(a)


def test_an_unreadable_item_shortens_its_group_and_shifts_no_other(tmp_path: Path) -> None:
    root = imagenet_folder(tmp_path / "imagenet", classes=4, per_class=8)
    good, _, _ = planned_build(tmp_path, dataset(root, pairs=4, epochs=1), out_name="good")
    bad_file = root / "n00000002" / "n00000002_0003.JPEG"
    bad_file.write_bytes(b"not a jpeg at all")
    bad, audit, _ = planned_build(tmp_path, dataset(root, pairs=4, epochs=1), out_name="bad")
    bad_id = "n00000002/n00000002_0003.JPEG"
    want = [[i for i in g if i != bad_id] for g in by_epoch(good)[0]]
    assert sorted(by_epoch(bad)[0]) == sorted(want)
    assert [r["status"] for r in audit if r["item_id"] == bad_id] == ["failed"]


def test_grouping_unit_keeps_the_earlier_behaviour(tmp_path: Path) -> None:
    root = imagenet_folder(tmp_path / "imagenet", classes=2, per_class=8)
    rows, _, payloads = planned_build(tmp_path, dataset(root, pairs=4, epochs=1, grouping="unit"))
    assert all("regroup" not in p for p in payloads)
    assert all(len({i.split("/")[0] for i in g}) == 1 for g in by_epoch(rows)[0])  # sorted units: one class


@pytest.mark.slow
def test_a_ray_build_with_two_workers_writes_the_same_sentences(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import ray

    from uvd.config import BuildConfig
    from uvd.runner import build

    root = imagenet_folder(tmp_path / "imagenet", classes=3, per_class=6)
    local, _, _ = planned_build(tmp_path, dataset(root, pairs=4, epochs=2), out_name="local")
    cfg = BuildConfig.model_validate({"out": str(tmp_path / "ray"), "seed": 0,
                                      "datasets": [dataset(root, pairs=4, epochs=2)]})
    try:
        summary = build(cfg, workers=2)
    finally:
        ray.shutdown()
    assert summary.succeeded and summary.inputs == 2 * 18 and summary.failures == {"remainder": 4}
    rows = [r for p in sorted((tmp_path / "ray" / "sentences" / "photos").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()]
    assert sorted(r["sentence_id"] for r in rows) == sorted(r["sentence_id"] for r in local)
    assert sorted(r["images"] for r in rows) == sorted(r["images"] for r in local)
