"""Fault drills: kill a Ray worker mid-build, kill the driver mid-build; check ids and bytes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.cluster import kill_when_committed, pids_matching
from uvd.config import load_config
from uvd.runner import build
from uvd.validate import validate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent  # so that subprocesses import tests.support


def _config(tmp_path: Path, units: int = 8, seconds: float = 0.25) -> Path:
    cfg = {"seed": 3, "run": {"max_retries": 3},
           "datasets": [{"name": "slow", "source": "tests.support.drill_sources:SlowSource",
                         "source_args": {"units": units, "items": 4, "seconds_per_item": seconds}}]}
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(ray_tmp: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if ray_tmp is not None:  # the build's local Ray lives here, so the drill can find all of it
        env["RAY_TMPDIR"] = str(ray_tmp)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return env


def _start_build(config: Path, out: Path, log: Path, ray_tmp: Path | None = None) -> subprocess.Popen:
    # Output to a file, not a pipe: nobody reads a pipe while the drill polls, and a full one blocks.
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "uvd", "build", str(config), "--out", str(out),
                                 "--workers", "2"], env=_env(ray_tmp), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the drill can kill all of it


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "sentences" / "slow").glob("part-*.parquet"))}


def _ids(out: Path) -> list[str]:
    files = sorted((out / "sentences" / "slow").glob("part-*.parquet"))
    return sorted(i for f in files for i in pq.read_table(f, columns=["sentence_id"]).column(0).to_pylist())


def _clean_build(config: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        assert build(load_config(config), out=str(out), use_ray=False).succeeded
    finally:
        sys.path.remove(str(ROOT))


def _worker_pids() -> list[int]:
    """Ray worker processes currently running a unit task (Ray renames them `ray::<task>`)."""
    return pids_matching(lambda cmdline, _: cmdline.startswith(b"ray::_run_unit_task"))


def test_killing_a_worker_mid_build_loses_and_duplicates_nothing(tmp_path):
    config = _config(tmp_path)
    clean, out = tmp_path / "clean", tmp_path / "out"
    _clean_build(config, clean)
    log = tmp_path / "build.log"
    proc = _start_build(config, out, log)
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        pids = _worker_pids()
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    proc.wait(timeout=600)
    log = log.read_text()
    assert killed is not None, f"no running worker was found to kill:\n{log[-3000:]}"
    assert proc.returncode == 0, log[-3000:]
    assert validate(str(out)) == []
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 32
    assert ids == _ids(clean)
    assert _shards(out) == _shards(clean)


def test_killing_the_driver_then_rerunning_redoes_only_unfinished_units(tmp_path):
    config = _config(tmp_path, units=10, seconds=0.4)
    clean, out = tmp_path / "clean", tmp_path / "out"
    _clean_build(config, clean)
    ray_tmp = Path(tempfile.mkdtemp(prefix="uvdkd-", dir="/tmp"))  # short: Ray's socket paths
    proc = _start_build(config, out, tmp_path / "killed.log", ray_tmp)
    stats_dir = out / "sentences" / "slow"
    kill_when_committed(proc, stats_dir, ray_tmp, poll=0.1)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    done_before = {p.name for p in stats_dir.glob("*.stats.json")}
    assert 2 <= len(done_before) < 10, "the kill should land mid-build"
    assert not (out / "manifest.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in stats_dir.glob("*.stats.json")}
    rerun = subprocess.run([sys.executable, "-m", "uvd", "build", str(config), "--out", str(out), "--workers", "2"],
                           env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{len(done_before)} already done, {10 - len(done_before)} to build" in rerun.stderr  # logged
    assert f"{len(done_before)} already done, {10 - len(done_before)} built, 0 failed" in rerun.stdout  # the summary
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())  # finished units were not redone
    assert _shards(out) == _shards(clean)
    assert validate(str(out)) == []
