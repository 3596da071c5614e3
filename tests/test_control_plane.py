"""The control plane at scale: committed state from listings, object-store commit, the manifest table.

Run against a local folder and a moto S3 server on loopback that counts the requests it serves
(counting requests is not timing: the bound holds on any machine).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.counting_s3 import counting_moto
from tests.support.tiny_units import tiny_config
from uvd import storage
from uvd.config import BuildConfig
from uvd.manifest import read_units
from uvd.runner import build
from uvd.cli.validate_cmd import main as validate_main
from uvd.validate import validate


def _build(out: str, units: int, **kw) -> object:
    return build(BuildConfig.model_validate(tiny_config(out, units, **kw)), use_ray=False)


def _names(url: str) -> list[str]:
    return sorted(storage.list_files(url))


def test_rerun_on_s3_builds_nothing_with_a_handful_of_requests():
    units, datasets = 120, 2
    with counting_moto() as (_, count):
        out = "s3://uvd/rerun"
        first = _build(out, units // datasets, datasets=datasets)
        assert first.built == units and first.succeeded
        first_requests = count.total
        count.reset()
        again = _build(out, units // datasets, datasets=datasets)
        assert again.built == 0 and again.skipped == units
        # listings (per dataset a LIST of its shards and one of its audits, per 1000 keys), the old units
        # table, the new manifest, and the lease (a conditional PUT, its read-back GET, the DELETE at the end)
        assert count.total <= units // 100 + 5 * datasets + 3, count.by_method  # here: 12
        # a first build writes 3 objects per unit and moves none (no COPY, no DELETE)
        assert count.by_method["DELETE"] == 1  # the lease's release (uvd.lease); nothing else is moved or removed
        assert first_requests <= 4 * units + 10 * datasets, (first_requests, count.by_method)
        fs, path = storage.fs_and_path(out)
        assert fs.size(f"{path}/manifest.json") < 64 << 10
        rows = read_units(out)
        assert len(rows) == units and all(r["status"] == "done" for r in rows)
        assert validate(out) == []


def test_a_rewritten_stats_file_is_read_again_and_its_unit_redone(tmp_path):
    out = str(tmp_path / "out")
    _build(out, 6)
    marker = Path(out) / "sentences" / "tiny0" / "part-00003.stats.json"
    stats = json.loads(marker.read_text())
    stats["dataset_hash"] = "built-by-another-recipe"
    storage.write_json(str(marker), stats)  # newer than what the units table recorded
    again = _build(out, 6)
    assert again.built == 1 and "tiny0/00003" in again.stats
    assert _build(out, 6).built == 0


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_unit_that_crashes_halfway_leaves_nothing_under_its_names(backend, tmp_path):
    def run(out: str) -> None:
        summary = _build(out, 3, crash_unit=1, items=3)
        assert list(summary.failed_units) == ["tiny0/00001"]
        assert "disk on fire" in summary.failed_units["tiny0/00001"]
        for kind in ("sentences", "audit"):
            names = _names(f"{out}/{kind}/tiny0")
            assert not any("00001" in n for n in names), names  # no shard, no audit, no temp, no marker
        assert _names(f"{out}/sentences/tiny0") == ["part-00000.parquet", "part-00000.stats.json",
                                                    "part-00002.parquet", "part-00002.stats.json"]
        assert any("tiny0/00001 not done" in p for p in validate(out))
        # the rerun redoes only the crashed unit (which crashes again, still leaving nothing)
        assert _build(out, 3, crash_unit=1, items=3).built == 0

    if backend == "local":
        run(str(tmp_path / "out"))
    else:
        with counting_moto():
            run("s3://uvd/crash")


def test_a_failed_multipart_upload_on_s3_is_aborted_and_never_visible():
    with counting_moto():
        fs, _ = storage.fs_and_path("s3://uvd/x")
        fs.default_block_size = 5 << 20  # small parts, so 12 MB goes out as a multipart upload
        with pytest.raises(RuntimeError, match="writer died"):
            with storage.atomic_open("s3://uvd/big/part-00000.parquet") as f:
                for _ in range(12):
                    f.write(b"x" * (1 << 20))
                assert f.mpu is not None  # parts were already uploaded
                raise RuntimeError("writer died")
        assert not fs.exists("uvd/big/part-00000.parquet")
        assert not fs.call_s3("list_multipart_uploads", Bucket="uvd").get("Uploads")
        storage.write_bytes("s3://uvd/big/ok.bin", b"whole")
        assert fs.cat("uvd/big/ok.bin") == b"whole"


def test_manifest_json_is_small_and_the_units_table_is_parquet(tmp_path):
    out = tmp_path / "out"
    _build(str(out), 300)
    man = json.loads((out / "manifest.json").read_text())
    assert (out / "manifest.json").stat().st_size < 8 << 10  # independent of the unit count
    assert man["units_table"] == "manifest/units.parquet" and "units" not in man and "shards" not in man
    assert man["totals"]["units"] == man["totals"]["units_done"] == 300
    table = pq.read_table(out / "manifest" / "units.parquet")
    assert table.num_rows == 300 and set(table.column("status").to_pylist()) == {"done"}
    assert sum(table.column("shard_bytes").to_pylist()) == man["totals"]["bytes"]


def test_validate_sample_checks_only_the_sampled_units(tmp_path, capsys):
    out = tmp_path / "out"
    _build(str(out), 12)
    for victim in range(12):  # damage every sentence shard: which are reported says which were checked
        shard = out / "sentences" / "tiny0" / f"part-{victim:05d}.parquet"
        shard.write_bytes(shard.read_bytes()[:-8] + b"damaged!")
    full = [p for p in validate(str(out)) if "sha256/bytes differ" in p]
    sampled = [p for p in validate(str(out), sample=3) if "sha256/bytes differ" in p]
    assert len(full) == 12 and len(sampled) == 3 and set(sampled) <= set(full)
    assert validate_main([str(out), "--sample", "2", "--no-ray", "--no-decode"]) == 1


def test_validate_on_s3_and_in_batches(tmp_path):
    with counting_moto():
        out = "s3://uvd/v"
        _build(out, 9)
        assert validate(out, batch=2) == []
        fs, path = storage.fs_and_path(out)
        fs.pipe(f"{path}/sentences/tiny0/part-00042.parquet", b"PAR1")
        warnings: list[str] = []  # a unit outside the plan (issue #22): a warning, never a problem nor data
        assert validate(out, batch=2, warnings=warnings) == []
        assert any("tiny0/00042 is outside the plan" in w for w in warnings)


@pytest.mark.slow
def test_validate_runs_on_ray(tmp_path):
    import ray

    out = tmp_path / "out"
    _build(str(out), 8)
    (out / "sentences" / "tiny0" / "part-00005.parquet").write_bytes(b"PAR1 broken")
    ray.shutdown()
    try:
        problems = validate(str(out), use_ray=True, batch=3)
    finally:
        ray.shutdown()
    assert any("part-00005.parquet" in p for p in problems)
    assert not any("part-00004" in p for p in problems)


def test_a_build_without_downloads_reads_no_shard_for_the_content_dedup_table(tmp_path, monkeypatch):
    from uvd import dedup

    read = []
    monkeypatch.setattr(dedup, "_content_keys", lambda item: read.append(item) or [])
    summary = _build(str(tmp_path / "out"), 6, fail=False)
    assert summary.succeeded and summary.sentences > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert read == [] and "dedup_table" not in manifest
    assert not (tmp_path / "out" / "dedup").exists()


def test_a_rerun_of_the_same_plan_leaves_the_units_table_as_it_is(tmp_path):
    out = tmp_path / "out"
    _build(str(out), 20)
    table = out / "manifest" / "units.parquet"
    before = (table.stat().st_mtime_ns, table.stat().st_ino, table.read_bytes())
    totals = json.loads((out / "manifest.json").read_text())["totals"]
    assert _build(str(out), 20).built == 0
    assert (table.stat().st_mtime_ns, table.stat().st_ino, table.read_bytes()) == before
    assert json.loads((out / "manifest.json").read_text())["totals"] == totals
    # a bigger plan (one more dataset) rewrites it, the old rows carried over in plan order
    old_sha = pq.read_table(table).column("shard_sha256").to_pylist()
    assert _build(str(out), 20, datasets=2).built == 20
    rows = read_units(str(out))
    assert [r["dataset"] for r in rows] == ["tiny0"] * 20 + ["tiny1"] * 20 and {r["status"] for r in rows} == {"done"}
    assert [r["shard_sha256"] for r in rows[:20]] == old_sha


def test_a_table_out_of_plan_order_is_indexed_and_no_stats_file_is_read(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    cfg = tiny_config(out, 4, datasets=2)
    build(BuildConfig.model_validate(cfg), use_ray=False)
    cfg["datasets"].reverse()  # same units, another plan order: the table no longer lines up with it
    reads = []
    real = storage.read_json
    monkeypatch.setattr("uvd.engine.read_json", lambda url: reads.append(url) or real(url))
    again = build(BuildConfig.model_validate(cfg), use_ray=False)
    assert again.built == 0 and again.skipped == 8 and reads == []
    assert [r["dataset"] for r in read_units(out)] == ["tiny1"] * 4 + ["tiny0"] * 4


def test_an_s3_listing_keeps_only_what_it_asked_for(tmp_path):
    with counting_moto():
        out = "s3://uvd/listing"
        _build(out, 30)
        fs, path = storage.fs_and_path(out)
        fs.invalidate_cache()
        listed = storage.list_files(f"{out}/sentences/tiny0", suffix=".stats.json")
        assert sorted(listed) == [f"part-{i:05d}.stats.json" for i in range(30)]
        assert all(v.size > 0 and v.version for v in listed.values())
        assert not fs.dircache  # the pages were filtered as they came, nothing cached about the shards


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_build_records_its_stats_files_as_listed_without_listing_them_again(backend, tmp_path, monkeypatch):
    from uvd import manifest

    def run(out: str) -> None:
        lists = []
        real = manifest.list_stats
        monkeypatch.setattr(manifest, "list_stats", lambda *a: lists.append(a) or real(*a))
        assert _build(out, 12, datasets=2).built == 24
        assert lists == []  # the units' own writes said what a listing would show
        fresh = storage.list_files(f"{out}/sentences/tiny1", suffix=".stats.json")
        rows = [r for r in read_units(out) if r["dataset"] == "tiny1"]
        assert [(r["stats_size"], r["stats_version"]) for r in rows] == [tuple(fresh[f"part-{r['unit']}.stats.json"])
                                                                        for r in rows]
        reads = []
        real_read = storage.read_json
        monkeypatch.setattr("uvd.engine.read_json", lambda url: reads.append(url) or real_read(url))
        assert _build(out, 12, datasets=2).built == 0 and reads == []  # the rerun trusts every row

    if backend == "local":
        run(str(tmp_path / "out"))
    else:
        with counting_moto():
            run("s3://uvd/listed")
