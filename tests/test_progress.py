"""Progress and messages: a line every interval when stderr is not a terminal, a tqdm bar when it
is, nothing but the summary with -q; the CLI sets this up once for every command."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from uvd import progress

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data" / "images"


def _config(tmp_path: Path) -> Path:
    cfg = {"out": str(tmp_path / "out"), "seed": 0, "datasets": [
        {"name": "photos", "source": "image_folder", "source_args": {"root": str(SAMPLES), "labels": False},
         "builder": "single", "items_per_unit": 3}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _uvd(*args: str, interval: str = "0") -> subprocess.CompletedProcess:
    env = dict(os.environ, UVD_PROGRESS_INTERVAL=interval,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # stdout/stderr are pipes: not a terminal, as under CI or `ray job submit`
    return subprocess.run([sys.executable, "-m", "uvd", *args], env=env, capture_output=True, text=True, timeout=300)


def test_build_without_a_terminal_logs_progress_lines(tmp_path: Path) -> None:
    photos = len(list(SAMPLES.glob("*.jpg")))
    units = -(-photos // 3)
    assert units >= 3
    run = _uvd("build", str(_config(tmp_path)), "--no-ray")
    assert run.returncode == 0, run.stderr
    lines = [l for l in run.stderr.splitlines() if l.startswith("build: ")]
    # interval 0: a line as each unit completes, with units done/total, items, rate, failures, ETA
    assert [int(re.match(r"build: (\d+)/", l).group(1)) for l in lines] == list(range(1, units + 1)), run.stderr
    assert all(f"/{units} units" in l and "items/s" in l and "failed" in l and "ETA" in l for l in lines)
    assert f"build: {units}/{units} units (100%), {photos} items" in lines[-1]
    assert "\r" not in run.stderr  # no bar redrawn into a log file
    assert f"plan: {units} units in 1 datasets" in run.stderr
    assert f"units: {units} planned, 0 already done, {units} built, 0 failed" in run.stdout  # the summary


def test_build_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    import pty

    main, tty = pty.openpty()  # stderr is a terminal here, stdout a pipe
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        run = subprocess.run([sys.executable, "-m", "uvd", "build", str(_config(tmp_path)), "--no-ray"], env=env,
                             stdout=subprocess.PIPE, stderr=tty, text=True, timeout=300)
        os.close(tty)
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
    err = b"".join(chunks).decode(errors="replace")
    assert run.returncode == 0, err
    assert "\r" in err and "build: 100%" in err and "items/s, 0 failed" in err, err  # tqdm redraws one line
    assert not re.search(r"^build: \d+/\d+ units", err, re.M)  # no periodic lines on a terminal
    assert "units:" in run.stdout


def test_quiet_build_prints_only_the_summary(tmp_path: Path) -> None:
    run = _uvd("-q", "build", str(_config(tmp_path)), "--no-ray")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines()[0].startswith("units: ") and len(run.stdout.splitlines()) == 3, run.stdout


def test_lines_come_every_interval_even_while_no_unit_finishes(caplog: pytest.LogCaptureFixture) -> None:
    progress.configure("lines", interval_s=0.05)
    try:
        with caplog.at_level(logging.INFO, logger="uvd.progress"):
            with progress.progress(4, "slow", "unit") as bar:
                time.sleep(0.4)  # one long unit
                bar.update(1, items=10, failed=2)
    finally:
        progress.configure("lines")
    lines = [r.getMessage() for r in caplog.records]
    assert sum(l.startswith("slow: 0/4 units") for l in lines) >= 3, lines
    assert "ETA ?" in lines[0]  # nothing done yet: no estimate
    assert lines[-1].startswith("slow: 1/4 units (25%), 10 items") and "2 failed" in lines[-1], lines


def test_bar_and_off_modes(capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    try:
        progress.configure("bar")
        with progress.progress(3, "tok", "shard") as bar:
            for _ in range(3):
                bar.update(1, items=5, failed=1)
        err = capsys.readouterr().err
        assert "tok" in err and "3/3" in err and "items/s, 3 failed" in err, err
        progress.configure("off")
        with caplog.at_level(logging.DEBUG), progress.progress(3, "quiet") as bar:
            bar.update(3)
        assert capsys.readouterr().err == "" and not caplog.records
    finally:
        progress.configure("lines")
    with pytest.raises(ValueError, match="progress mode"):
        progress.configure("loud")
