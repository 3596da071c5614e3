"""Nothing without a row (issue #23): every input a source can see ends in the audit exactly once,
and `uvd validate` holds each unit's audit to the count the source planned for it
(`Source.planned_items`, recorded as `planned_inputs` in the unit's stats), so an input that
never got a row fails validation (inputs = ok + failed alone cannot see it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from support.hostile_annotations import coco_data, write_coco
from uvd.api import Source
from uvd.config import BuildConfig
from uvd.records import Item
from uvd.runner import build
from uvd.validate import validate


class DroppingSource(Source):
    """Plans three photos per unit and, told to, silently yields only two of them."""

    name = "dropping"

    def plan(self, items_per_unit):
        return [{"names": ["a", "b", "c"], "drop": self.ctx.dataset == "drops"}]

    def planned_items(self, payload):
        return len(payload["names"])

    def read(self, payload):
        names = payload["names"][:-1] if payload["drop"] else payload["names"]
        for n in names:
            yield Item(n, self.ctx.dataset, images=[np.full((32, 32, 3), 60, np.uint8)])


def _audit(out: Path, dataset: str) -> dict[str, dict]:
    return {r["item_id"]: r for p in sorted((out / "audit" / dataset).glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()}


def test_a_source_that_drops_an_item_silently_fails_validation(tmp_path):
    out = tmp_path / "out"
    cfg = BuildConfig.model_validate({"out": str(out), "datasets": [
        {"name": name, "source": "test_nothing_without_a_row:DroppingSource", "builder": "single"}
        for name in ("keeps", "drops")]})
    assert build(cfg, use_ray=False).succeeded
    stats = json.loads((out / "sentences" / "drops" / "part-00000.stats.json").read_text())
    assert stats["planned_inputs"] == 3 and stats["inputs"] == stats["ok"] + stats["failed"] == 2
    problems = validate(str(out), decode_images=False)
    assert [p for p in problems if "planned" in p] == [
        "unit drops/00000: 2 audit rows, but the source planned 3 inputs (an input without a row, or a row of no input)"]
    assert len(problems) == 1  # the unit that keeps every item passes


def test_a_coco_image_id_listed_twice_gets_a_row_and_the_build_validates(tmp_path):
    data = coco_data()
    data["images"].append(dict(data["images"][0]))  # id 1 again, same file
    data["images"].append(dict(data["images"][1], file_name="a.jpg"))  # id 2 again, another photo
    ann, images = write_coco(tmp_path, data)
    out = tmp_path / "out"
    cfg = BuildConfig.model_validate({"out": str(out), "datasets": [{
        "name": "coco", "source": "coco", "source_args": {"annotations": str(ann), "images_dir": str(images)},
        "builder": "pairs", "builder_args": {"task": "detection", "pairs": 2, "min_pairs": 1}}]})
    assert build(cfg, use_ray=False).succeeded
    audit = _audit(out, "coco")
    assert audit["ann.json:images[2]"]["reason"] == audit["ann.json:images[3]"]["reason"] == "duplicate"
    assert "image id 1 listed again" in audit["ann.json:images[2]"]["error"]
    assert {"1", "2"} <= set(audit) and len(audit) == 4
    assert validate(str(out), decode_images=False) == []
