"""A marker only vouches for the shard it describes (issue #22, Deliver 3), and the smaller holes (8):
staged copies of dead processes are removed, gcsfs's etag/generation are read as the version."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

from tests.support.counting_s3 import counting_moto
from tests.support.tiny_units import tiny_config
from uvd import storage
from uvd.config import BuildConfig
from uvd.manifest import read_units
from uvd.runner import build
from uvd.validate import validate


def _build(out: str, units: int, **kw: Any) -> Any:
    return build(BuildConfig.model_validate(tiny_config(out, units, items=2, **kw)), use_ray=False)


def _shard_key(out: str, unit: str) -> str:
    return storage.fs_and_path(f"{out}/sentences/tiny0/part-{unit}.parquet")[1]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_deleted_or_truncated_shard_beside_its_stats_file_is_rebuilt(backend, tmp_path):
    def run(out: str, count: Any = None) -> None:
        assert _build(out, 6).built == 6
        fs, _ = storage.fs_and_path(out)
        fs.rm_file(_shard_key(out, "00001"))  # deleted; its stats file stays
        data = fs.cat_file(_shard_key(out, "00004"))
        fs.pipe_file(_shard_key(out, "00004"), data[: len(data) // 2])  # truncated; its stats file stays
        if count is not None:
            count.reset()
        again = _build(out, 6)
        assert again.built == 2 and sorted(again.stats) == ["tiny0/00001", "tiny0/00004"]
        if count is not None:  # learnt from the one listing per dataset folder: no request per unit
            assert count.by_method["HEAD"] <= 3 and count.by_method["GET"] <= 8, count.by_method
        assert validate(out) == []
        assert _build(out, 6).built == 0

    if backend == "local":
        run(str(tmp_path / "out"))
    else:
        with counting_moto() as (_, count):
            run("s3://uvd/truncated", count)


@pytest.mark.parametrize("trusted", [True, False])
def test_a_deleted_or_truncated_audit_makes_its_unit_pending(tmp_path, trusted):
    """The audit holds every input's row: a unit whose audit is gone is not done (the chaos drill found
    a deleted audit counted as committed for ever, its items in no audit row). `trusted`: the units
    table vouches for the stats file; otherwise the stats file is read (no units table)."""
    out = str(tmp_path / "out")
    assert _build(out, 4).built == 4
    audit = tmp_path / "out" / "audit" / "tiny0"
    (audit / "part-00002.parquet").unlink()
    data = (audit / "part-00003.parquet").read_bytes()
    (audit / "part-00003.parquet").write_bytes(data[: len(data) - 7])
    if not trusted:
        (tmp_path / "out" / "manifest" / "units.parquet").unlink()
    again = _build(out, 4)
    assert sorted(again.stats) == ["tiny0/00002", "tiny0/00003"]
    assert validate(out) == []
    assert _build(out, 4).built == 0


def test_a_shard_rewritten_at_the_same_size_is_not_vouched_for_by_the_old_stats_file(tmp_path):
    out = str(tmp_path / "out")
    _build(out, 3)
    shard = Path(_shard_key(out, "00002"))
    data = shard.read_bytes()
    tmp = shard.with_suffix(".other")
    tmp.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes, written anew (new inode)
    os.replace(tmp, shard)
    again = _build(out, 3)
    assert sorted(again.stats) == ["tiny0/00002"]
    assert shard.read_bytes() == data and validate(out) == []


def test_a_rebuild_killed_between_shard_and_stats_leaves_no_old_marker(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    assert _build(out, 3).built == 3  # recipe A (seed 0)
    marker = Path(out) / "sentences" / "tiny0" / "part-00001.stats.json"
    old = json.loads(marker.read_text())
    real = storage.write_json_listed

    def killed_before_the_marker(url: str, obj: Any) -> Any:
        if url.endswith("part-00001.stats.json"):
            raise KeyboardInterrupt("killed between shard and stats")
        return real(url, obj)

    monkeypatch.setattr("uvd.engine.write_json_listed", killed_before_the_marker)
    cfg_b = tiny_config(out, 3, items=2)
    cfg_b["seed"] = 1  # recipe B: every unit is rebuilt
    with pytest.raises(KeyboardInterrupt):
        build(BuildConfig.model_validate(cfg_b), use_ray=False)
    assert not marker.exists()  # the old (recipe A) marker went before the new shard came
    shard = Path(_shard_key(out, "00001"))
    assert shard.exists() and storage.sha256_of(str(shard))[0] != old["shard"]["sha256"]
    monkeypatch.setattr("uvd.engine.write_json_listed", real)
    back = _build(out, 3)  # recipe A again: unit 00001 must not count as done with B's shard
    assert "tiny0/00001" in back.stats
    assert json.loads(marker.read_text())["shard"]["sha256"] == storage.sha256_of(str(shard))[0]
    assert validate(out) == []


def test_the_units_table_records_the_shard_as_listed(tmp_path):
    out = str(tmp_path / "out")
    _build(out, 2)
    listed = storage.list_files(f"{out}/sentences/tiny0", suffix=".parquet")
    rows = read_units(out)
    assert [r["shard_version"] for r in rows] == [listed[f"part-{r['unit']}.parquet"].version for r in rows]


# ---- gcsfs reports `etag` and `generation` (no `ETag`) ----

class FakeGCS(AbstractFileSystem):
    """Lists like gcsfs: each object's info carries `etag` and `generation`, and nothing named ETag."""

    protocol = "fakegcs"
    objects: dict[str, tuple[int, str, str]] = {}

    def find(self, path: str, maxdepth: Any = None, withdirs: bool = False, detail: bool = False, **kw: Any) -> Any:
        path = self._strip_protocol(path).rstrip("/")
        found = {k: {"name": k, "type": "file", "size": size, "etag": etag, "generation": gen}
                 for k, (size, etag, gen) in self.objects.items() if k.startswith(path + "/")}
        return found if detail else sorted(found)


def test_gcs_generation_is_read_as_the_listed_version():
    fsspec.register_implementation("fakegcs", FakeGCS, clobber=True)
    FakeGCS.objects = {"bucket/out/sentences/d/part-00000.stats.json": (120, "CJ+etag==", "1712345678901234"),
                       "bucket/out/sentences/d/part-00000.parquet": (4096, "CK+etag==", "1712345678905678")}
    listed = storage.list_files("fakegcs://bucket/out/sentences/d", suffix=(".stats.json", ".parquet"))
    assert listed == {"part-00000.stats.json": storage.Listed(120, "1712345678901234"),
                      "part-00000.parquet": storage.Listed(4096, "1712345678905678")}
    FakeGCS.objects = {"bucket/out/x.stats.json": (7, "only-an-etag", "")}
    listed = storage.list_files("fakegcs://bucket/out", suffix=".stats.json")
    assert listed == {"x.stats.json": storage.Listed(7, "only-an-etag")}


# ---- staged copies (sources/remote.py local_copy) ----

def test_staged_copies_carry_the_pid_and_those_of_dead_processes_are_removed(tmp_path, monkeypatch):
    from sources import remote

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(remote, "_STAGE_SWEPT", set())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    dead = tmp_path / f"uvd-stage-{dead_pid}-abc"  # a worker killed at unit timeout left it
    dead.mkdir()
    (dead / "video.mp4").write_bytes(b"x" * 100)
    alive = tmp_path / f"uvd-stage-{os.getppid()}-def"  # another live process's copy
    alive.mkdir()
    other = tmp_path / "uvd-stage-notapid"
    other.mkdir()
    url = "memory://stage-src/clip.mp4"
    fsspec.filesystem("memory").pipe(url, b"frames")
    with remote.local_copy(url, max_bytes=1 << 20) as local:
        assert Path(local).read_bytes() == b"frames"
        assert Path(local).parent.name.startswith(f"uvd-stage-{os.getpid()}-")
    assert not dead.exists() and alive.exists() and other.exists()
    assert not list(tmp_path.glob(f"uvd-stage-{os.getpid()}-*"))  # removed after use as before
