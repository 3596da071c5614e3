"""One build per output at a time (issue #22, Deliver 2): the lease `<out>/_lease.json`, and a temp
sweep that removes only its own run's (or abandoned) temporaries."""
from __future__ import annotations

import json
import re
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.counting_s3 import counting_moto
from tests.support.tiny_units import tiny_config
from uvd import lease, storage
from uvd.cli.build_cmd import main as build_main
from uvd.config import BuildConfig
from uvd.engine import sweep_temps
from uvd.layout import UnitLayout
from uvd.runner import build
from uvd.validate import validate


def _cfg(out: str, units: int = 3) -> BuildConfig:
    return BuildConfig.model_validate(tiny_config(out, units))


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_second_holder_is_refused_until_the_first_releases(backend, tmp_path):
    def run(out: str) -> None:
        first = lease.acquire(out, "run-a", heartbeat=False)
        with pytest.raises(lease.LeaseHeld) as held:
            lease.acquire(out, "run-b", heartbeat=False)
        msg = str(held.value)
        assert f"host {socket.gethostname()}" in msg and f"pid {os.getpid()}" in msg and "run run-a" in msg
        assert re.search(r"last heartbeat \d+s ago", msg) and "--takeover" in msg
        with pytest.raises(lease.LeaseHeld):  # a live lease is never taken over
            lease.acquire(out, "run-b", takeover=True, heartbeat=False)
        assert lease.read_lease(out)["run_id"] == "run-a"
        first.release()
        assert lease.read_lease(out) is None
        lease.acquire(out, "run-b", heartbeat=False).release()

    if backend == "local":
        run(str(tmp_path / "out"))
    else:
        with counting_moto():
            run("s3://uvd/leased")


def test_a_second_uvd_build_on_a_held_output_exits_2_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(str(out), 3)))
    with lease.acquire(str(out), "the-first-build", heartbeat=False):
        assert build_main([str(config), "--no-ray"]) == 2
        err = capsys.readouterr().err
        assert "held by another build" in err and "the-first-build" in err and f"pid {os.getpid()}" in err
        assert not (out / "sentences").exists()  # refused before planning: nothing written
    assert build_main([str(config), "--no-ray"]) == 0
    assert not (out / lease.LEASE_NAME).exists()  # released at the end


def _write_lease(out: Path, **body: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / lease.LEASE_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1, "run_id": "old-run",
                                                    "started": time.time() - 500, "stale_after_s": 60, **body}))


def test_a_stale_lease_needs_takeover_and_a_dead_local_holder_is_replaced_at_once(tmp_path):
    out = tmp_path / "out"
    _write_lease(out, heartbeat=time.time() - 120)  # another host, silent for 2 minutes
    with pytest.raises(lease.LeaseHeld, match="stale.*--takeover"):
        build(_cfg(str(out)), use_ray=False)
    assert build(_cfg(str(out)), use_ray=False, takeover=True).built == 3
    _write_lease(out, heartbeat=time.time() - 120)
    fresh = time.time()
    _write_lease(out, heartbeat=fresh)  # another host, alive
    with pytest.raises(lease.LeaseHeld, match="alive"):
        build(_cfg(str(out)), use_ray=False, takeover=True)
    # a build killed on this host: its pid is gone, so a plain rerun proceeds
    _write_lease(out, host=socket.gethostname(), pid=_dead_pid(), heartbeat=time.time())
    assert build(_cfg(str(out)), use_ray=False).skipped == 3
    assert validate(str(out)) == []


def test_the_heartbeat_renews_and_a_lost_lease_stops_the_manifest(tmp_path):
    out = str(tmp_path / "out")
    held = lease.acquire(out, "beating", heartbeat_s=0.05)
    first = lease.read_lease(out)["heartbeat"]
    deadline = time.time() + 10
    while lease.read_lease(out)["heartbeat"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert lease.read_lease(out)["heartbeat"] > first
    storage.write_json(f"{out}/{lease.LEASE_NAME}", {**lease.read_lease(out), "run_id": "took-it-over"})
    while not held.lost and time.time() < deadline:
        time.sleep(0.02)
    with pytest.raises(lease.LeaseLost, match="lost its lease"):
        held.check()
    held.release()
    assert lease.read_lease(out)["run_id"] == "took-it-over"  # the new holder's lease is left alone


def test_the_lease_is_released_when_the_build_raises(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupted(cfg: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("uvd.runner.plan_units", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(_cfg(str(out)), use_ray=False)
    assert not (out / lease.LEASE_NAME).exists()


def test_a_build_interrupted_by_ctrl_c_removes_its_own_temporaries_and_its_lease(tmp_path, monkeypatch):
    out = tmp_path / "out"
    folder = out / "sentences" / "tiny0"
    folder.mkdir(parents=True)
    stranger = folder / "part-00001.parquet.tmp-another-run-0123456789ab"  # not this build's
    stranger.write_bytes(b"x")

    def killed_worker_then_ctrl_c(cfg: Any, out: str, pending: Any, *a: Any) -> None:
        (folder / f"part-00000.parquet.tmp-{storage.run_id()}-0123456789ab").write_bytes(b"half")  # a killed writer's
        raise KeyboardInterrupt

    monkeypatch.setattr("uvd.runner._run_inline", killed_worker_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        build(_cfg(str(out)), use_ray=False)
    assert sorted(p.name for p in folder.iterdir()) == [stranger.name]
    assert not (out / lease.LEASE_NAME).exists()


def test_the_sweep_removes_only_its_own_runs_and_abandoned_temporaries(tmp_path, monkeypatch):
    out = tmp_path / "out"
    folder = out / "sentences" / "tiny0"
    folder.mkdir(parents=True)
    storage.set_run_id("run-other")
    with storage.atomic_open(str(folder / "part-00000.parquet")) as f:  # another build, mid-write
        f.write(b"x")
        others = sorted(folder.glob("*.tmp-*"))
    (folder / "part-00000.parquet.tmp-run-other-0123456789ab").write_bytes(b"x")
    (folder / "part-00001.parquet.tmp-run-mine-0123456789ab").write_bytes(b"x")  # this run's
    ended = folder / "part-00002.parquet.tmp-run-taken-over-0123456789ab"  # of a build this one took over from
    ended.write_bytes(b"x")
    old = folder / "part-00003.parquet.tmp-run-other-abcdefabcdef"  # abandoned long ago
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    storage.set_run_id("run-mine")
    try:
        assert [p.name.split(".tmp-")[1].rsplit("-", 1)[0] for p in others] == ["run-other"]  # temps carry the run id
        assert sweep_temps(UnitLayout.sentences(str(out)), ["tiny0"], stale_s=60, ended_runs=["run-taken-over"]) == 3
        assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet",
                                                            "part-00000.parquet.tmp-run-other-0123456789ab"]
        # a temporary that vanishes under the sweep (moved into place by its writer) is no error
        real = storage.list_names
        monkeypatch.setattr("uvd.engine.list_names",
                            lambda url: real(url) + ["part-00009.parquet.tmp-run-mine-0123456789ab"])
        assert sweep_temps(UnitLayout.sentences(str(out)), ["tiny0"], stale_s=60) == 0
    finally:
        storage.set_run_id("")


@pytest.mark.slow  # two uvd processes, ~15 s
def test_two_uvd_builds_at_once_the_second_refuses_and_the_first_finishes_intact(tmp_path):
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "out"
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump({"seed": 3, "out": str(out), "datasets": [
        {"name": "slow", "source": "tests.support.drill_sources:SlowSource",
         "source_args": {"units": 4, "items": 2, "seconds_per_item": 1.0}}]}))  # ~8 s: the second starts well within
    cmd = [sys.executable, "-m", "uvd", "build", str(config), "--no-ray"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / lease.LEASE_NAME).exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        holder = json.loads((out / lease.LEASE_NAME).read_text())
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr and holder["run_id"] in second.stderr
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stdout + stderr
    assert validate(str(out)) == [] and not (out / lease.LEASE_NAME).exists()
