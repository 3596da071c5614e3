"""The backbone end to end: audit of bad inputs, rerun does nothing, resume, determinism across workers."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import BAD_AND_ODD
from uvd import codec
from uvd.api import Source
from uvd.config import BuildConfig
from uvd.cli.inspect_cmd import inspect_path
from uvd.shard_summary import contact_sheet
from uvd.records import Item
from uvd.runner import build
from uvd.validate import validate

# Ray workers must import this module for the failing-unit test (they inherit the environment).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))


def _cfg(root: Path, out: Path, **extra) -> BuildConfig:
    return BuildConfig.model_validate({
        "out": str(out), "seed": 7,
        "datasets": [
            {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
             "builder": "single", "items_per_unit": 4},
            {"name": "classes", "source": "image_folder", "source_args": {"root": str(root)},
             "builder": "category", "builder_args": {"images_per_sentence": 3}},
        ], **extra})


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("part-*.parquet"))}


def _audit(out: Path, dataset: str) -> dict[str, dict]:
    rows = pq.read_table(out / "audit" / dataset).to_pylist()
    return {r["item_id"]: r for r in rows}


def test_bad_inputs_end_in_the_audit_and_the_build_completes(odd_folder, tmp_path):
    out = tmp_path / "out"
    summary = build(_cfg(odd_folder, out), use_ray=False)
    assert summary.succeeded
    audit = _audit(out, "photos")
    assert len(audit) == 7 + len(BAD_AND_ODD)
    for name, (_, reason) in BAD_AND_ODD.items():
        row = audit[f"odd/{name}"]
        if reason is None:
            assert row["status"] == "ok", row
        else:
            assert row["status"] == "failed" and row["reason"] == reason and row["error"], row
    assert validate(str(out)) == []
    manifest_totals = json.loads((out / "manifest.json").read_text())["totals"]
    assert manifest_totals["inputs"] == manifest_totals["ok"] + manifest_totals["failed"]
    # 2 datasets × bad files; classes of 7 and 4 good images leave one leftover each in sentences of 3
    assert manifest_totals["failures"] == {"decode": 4, "empty": 2, "too_large": 2, "too_few": 2}


def test_rerun_does_nothing_and_a_lost_stats_file_redoes_exactly_that_unit(odd_folder, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(odd_folder, out)
    first = build(cfg, use_ray=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("part-*")}
    again = build(cfg, use_ray=False)
    assert again.built == 0 and again.skipped == first.units
    assert {p: p.stat().st_mtime_ns for p in out.rglob("part-*")} == before
    victim = out / "sentences" / "photos" / "part-00001.stats.json"
    victim.unlink()
    third = build(cfg, use_ray=False)
    assert third.built == 1
    changed = {p for p in out.rglob("part-*") if before.get(p) != p.stat().st_mtime_ns}
    assert {p.name for p in changed} == {"part-00001.parquet", "part-00001.stats.json"}
    assert validate(str(out)) == []


def test_validate_finds_tampering_and_uncommitted_shards(odd_folder, tmp_path):
    out = tmp_path / "out"
    build(_cfg(odd_folder, out), use_ray=False)
    shard = out / "sentences" / "photos" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    (out / "sentences" / "photos" / "part-00099.parquet").write_bytes(b"PAR1")
    warnings: list[str] = []
    problems = "\n".join(validate(str(out), warnings=warnings))
    assert "photos/part-00000.parquet: sha256/bytes differ" in problems
    # a unit the plan does not have (issue #22): a warning, never a problem nor data
    assert "part-00099" not in problems and any("photos/00099 is outside the plan" in w for w in warnings)


def test_inspect_and_contact_sheet(odd_folder, tmp_path):
    out = tmp_path / "out"
    build(_cfg(odd_folder, out), use_ray=False)
    text = inspect_path(str(out))
    assert "sentences:" in text and "by task:   category" in text and "failures by reason:" in text
    sheet = tmp_path / "sheet.png"
    row = contact_sheet(str(out / "sentences" / "classes"), 0, str(sheet))
    drawn = cv2.imread(str(sheet))[:, :, ::-1]
    first = codec.decode(row["images"][0])
    tile = drawn[26 + 4:26 + 4 + 256, 4:4 + 256]  # the first tile under the title
    assert np.abs(tile.astype(int) - first.astype(int)).mean() < 2
    assert drawn.shape[1] >= row["num_images"] * 256


class CrashingSource(Source):
    """Reads two items of unit 1, then dies: a crash halfway through a unit."""

    name = "crashing"

    def plan(self, items_per_unit):
        return [{"n": 0}, {"n": 1}]

    def read(self, payload):
        img = np.full((64, 64, 3), 100 * payload["n"], np.uint8)
        for i in range(2):
            yield Item(f"{payload['n']}-{i}", self.ctx.dataset, images=[img])
        if payload["n"] == 1:
            raise RuntimeError("disk on fire")


def _crash_cfg(out: Path) -> BuildConfig:
    return BuildConfig.model_validate({"out": str(out), "run": {"max_retries": 1},
                                       "datasets": [{"name": "c", "source": "test_build:CrashingSource"}]})


def test_a_unit_that_crashes_halfway_leaves_no_finished_looking_shard(tmp_path):
    out = tmp_path / "out"
    summary = build(_crash_cfg(out), use_ray=False)
    assert not summary.succeeded and "c/00001" in summary.failed_units
    assert "disk on fire" in summary.failed_units["c/00001"]
    leftovers = sorted(p.name for p in (out / "sentences" / "c").iterdir())
    assert leftovers == ["part-00000.parquet", "part-00000.stats.json"]
    assert any("c/00001 not done" in p for p in validate(str(out)))


@pytest.mark.slow
def test_ray_shards_are_byte_identical_for_1_and_2_workers_and_failing_units_are_reported(odd_folder, tmp_path):
    import ray

    cfg = _cfg(odd_folder, tmp_path / "unused")
    inline = tmp_path / "inline"
    build(cfg, out=str(inline), use_ray=False)
    ray.shutdown()
    build(cfg, out=str(tmp_path / "w1"), workers=1)
    ray.shutdown()
    two = build(cfg, out=str(tmp_path / "w2"), workers=2)
    assert two.succeeded
    a, b, c = _files(tmp_path / "w1"), _files(tmp_path / "w2"), _files(inline)
    assert a.keys() == b.keys() == c.keys() and len(a) > 4
    assert a == b == c
    # A unit whose task keeps failing: retried by Ray, then reported; the other unit is committed.
    summary = build(_crash_cfg(tmp_path / "crash"), workers=2)
    assert list(summary.failed_units) == ["c/00001"] and summary.built == 1
    ray.shutdown()
