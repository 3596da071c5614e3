"""The `pairs` and `tuple` builders, and the task table they share."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from renderers.palette import class_color
from sentence_builders.pairs import PairsBuilder, PairsOptions
from sentence_builders.tasks import TASKS, get_task
from sentence_builders.tuple import TupleBuilder, TupleOptions
from sources.coco import CocoOptions, CocoSource
from uvd.api import BuildContext
from uvd.config import parse_model, BuildConfig
from uvd.errors import ConfigError
from uvd.records import Failed, Item, VisualSentence

COCO = Path(__file__).resolve().parent.parent / "sample_data" / "coco"
CTX = BuildContext(dataset="t")


def _jpeg(h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _box_item(i: int, bbox: list[float] | None = (20.0, 20.0, 60.0, 50.0), data: bytes | None = None) -> Item:
    objs = [] if bbox is None else [{"id": i, "category_id": 3, "category": "car", "bbox": list(bbox),
                                     "iscrowd": 0, "segmentation": None, "keypoints": None}]
    return Item(item_id=f"img{i:02d}", source="t", images=[data or _jpeg(120, 160, i)],
                annotations={"width": 160, "height": 120, "objects": objs})


def _drive(builder, items):
    out = []
    for it in items:
        out += list(builder.process(it))
    out += list(builder.finish())
    return [r for r in out if isinstance(r, VisualSentence)], [r for r in out if isinstance(r, Failed)]


def test_task_table_resolves_names_and_refuses_unknown_ones():
    assert {"detection", "pose", "segmentation", "instance_segmentation"} <= set(TASKS)
    assert callable(get_task("detection"))
    assert get_task("sentence_builders.annotation_tasks:pose") is get_task("pose")
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("telepathy")
    with pytest.raises(Exception, match="unknown task"):
        PairsOptions(task="telepathy")


def test_pairs_groups_consecutive_items_x1_y1_x2_y2_and_audits_a_small_leftover():
    b = PairsBuilder(PairsOptions(task="detection", pairs=2, min_pairs=2, epochs=1), CTX)
    sents, failed = _drive(b, [_box_item(i) for i in range(5)])
    assert [s.item_ids for s in sents] == [["img00", "img01"], ["img02", "img03"]]
    s = sents[0]
    assert (s.layout, s.task, len(s.images)) == ("pairs", "detection", 4)
    assert s.lossless == [False, True, False, True]
    for x, y in zip(s.images[0::2], s.images[1::2]):  # y = x with the box drawn in the car colour
        changed = np.any(x != y, axis=2)
        assert changed.any() and np.all(y[changed] == class_color(3))
    assert [(f.item_id, f.reason.split(":")[0]) for f in failed] == [("img04", "too_few")]
    assert len({s.sentence_id for s in sents}) == 2


def test_pairs_default_is_8_pairs_and_a_short_tail_still_makes_a_sentence():
    b = PairsBuilder(PairsOptions(task="detection", epochs=1), CTX)
    sents, failed = _drive(b, [_box_item(i) for i in range(11)])
    assert [len(s.images) for s in sents] == [16, 6] and not failed


def test_pairs_bad_item_fails_alone_and_does_not_break_its_group():
    items = [_box_item(0), _box_item(1, bbox=None), _box_item(2, data=b"not a jpeg"), _box_item(3)]
    b = PairsBuilder(PairsOptions(task="detection", pairs=2), CTX)
    sents, failed = _drive(b, items)
    assert [s.item_ids for s in sents] == [["img00", "img03"]]
    assert {f.item_id: f.reason.split(":")[0] for f in failed} == {"img01": "empty", "img02": "decode"}


def test_pairs_respects_the_build_image_limit():
    b = PairsBuilder(PairsOptions(task="detection", pairs=8, epochs=1), BuildContext(dataset="t", max_images=6))
    sents, _ = _drive(b, [_box_item(i) for i in range(6)])
    assert [len(s.images) for s in sents] == [6, 6]


def _coco_items() -> list[Item]:
    src = CocoSource(CocoOptions(annotations=[str(COCO / "test_coco.json")], images_dir=str(COCO)), CTX)
    return [it for unit in src.plan(64) for it in src.read(unit)]


ALL = ["detection", "pose", "segmentation", "instance_segmentation"]


def test_tuple_is_a_seeded_m_subset_of_the_photo_and_its_annotations():
    items = _coco_items()
    subsets = {}
    for seed in range(6):
        ctx = BuildContext(dataset="t", seed=seed)
        sents, failed = _drive(TupleBuilder(TupleOptions(tasks=ALL), ctx), items)
        assert not failed and len(sents) == 4
        for s in sents:
            meta = s.meta
            assert s.layout == "tuple" and 2 <= len(s.images) <= 5 and len(s.images) == len(meta["chosen"])
            assert meta["chosen"] == sorted(set(meta["chosen"])) and max(meta["chosen"]) < 5
            assert meta["available"] == ["photo"] + ALL
            # The photo is stored as JPEG, each annotation losslessly.
            assert s.lossless == [i != 0 for i in meta["chosen"]]
            assert s.task == "+".join(meta["tasks"]) or (s.task == "image")
            subsets[(seed, s.item_ids[0])] = tuple(meta["chosen"])
    # Seeded: the same seed gives the same subsets, and the seeds do not all agree.
    again, _ = _drive(TupleBuilder(TupleOptions(tasks=ALL), BuildContext(dataset="t", seed=3)), items)
    assert all(tuple(s.meta["chosen"]) == subsets[(3, s.item_ids[0])] for s in again)
    assert len({subsets[(seed, "785")] for seed in range(6)}) > 1
    assert len({len(v) for v in subsets.values()}) > 1  # m varies too


def test_tuple_skips_tasks_with_nothing_to_render_and_caps_m():
    boxes_only = [_box_item(i) for i in range(3)]
    sents, failed = _drive(TupleBuilder(TupleOptions(tasks=["pose", "detection"], max_images=2), CTX), boxes_only)
    assert not failed and all(len(s.images) == 2 for s in sents)
    assert all(s.meta["skipped"] == ["pose"] and s.meta["available"] == ["photo", "detection"] for s in sents)
    assert all(s.task == "detection" for s in sents)
    sents, failed = _drive(TupleBuilder(TupleOptions(tasks=["pose"]), CTX), boxes_only)
    assert not sents and all(f.reason.startswith("too_few:") and "pose: empty" in f.reason for f in failed)


def test_tuple_never_exceeds_16_images():
    with pytest.raises(Exception):
        TupleOptions(tasks=["detection"], max_images=17)


@pytest.mark.slow
def test_ray_build_of_coco_pairs_and_tuple(tmp_path):
    """One build through Ray: every input audited, sentences of the expected shapes."""
    import ray

    from uvd.runner import build
    from uvd.shards import read_table

    src = {"annotations": str(COCO / "test_coco.json"), "images_dir": str(COCO)}
    cfg = parse_model(BuildConfig, {"out": str(tmp_path / "out"), "datasets": [
        {"name": "pose", "source": "coco", "source_args": src, "builder": "pairs",
         "builder_args": {"task": "pose", "grouping": "unit", "epochs": 1}},
        {"name": "tup", "source": "coco", "source_args": src, "builder": "tuple", "builder_args": {"tasks": ALL},
         "items_per_unit": 2},
    ]}, "test")
    try:
        summary = build(cfg, workers=1)
    finally:
        ray.shutdown()
    assert summary.succeeded and summary.inputs == 8 and summary.ok == 8
    pose = read_table(str(tmp_path / "out" / "sentences" / "pose" / "part-00000.parquet")).to_pylist()
    assert [(r["task"], r["layout"], r["num_images"]) for r in pose] == [("pose", "pairs", 8)]
    parts = sorted((tmp_path / "out" / "sentences" / "tup").glob("part-*.parquet"))
    assert len(parts) == 2  # 4 images, 2 per unit
    tup = [r for p in parts for r in read_table(str(p)).to_pylist()]
    assert sorted(json.loads(r["meta"])["item_id"] for r in tup) == ["196141", "197388", "40083", "785"]
    assert all(r["layout"] == "tuple" and 2 <= r["num_images"] <= 5 for r in tup)
