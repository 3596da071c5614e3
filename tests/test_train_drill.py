"""Fault drill for training: SIGKILL `python -m train` mid-run, rerun the same command, and check
that it resumes from the latest checkpoint and logs the same loss at every later step as an
uninterrupted run with the same seed (equal, not close, as the in-process resume test), each step
once in log.jsonl."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from train import checkpoint
from tests.support.token_shards import video_token_build

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
STEPS = 60


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_token_build(tmp_path_factory.mktemp("build"))


def _config(tokens: Path, out: Path, path: Path) -> Path:
    cfg = {"model": {"size": "tiny", "max_seq_len": 256},
           "data": {"tokens": [str(tokens)], "seq_len": 128, "piece_rows": 8},
           "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 3},
           "train": {"out": str(out), "seed": 0, "steps": STEPS, "batch_size": 2, "grad_accum": 2,
                     "log_every": 1, "ckpt_every": 4, "keep_checkpoints": 2, "threads": 1}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(cfg: Path, stdout: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", UVD_TORCH_THREADS="1")
    with open(stdout, "ab") as f:  # appended to: the rerun's output follows the killed run's
        return subprocess.Popen([sys.executable, "-m", "train", str(cfg)], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)  # own group: killpg


def _run(cfg: Path, stdout: Path, timeout: float = 300) -> None:
    proc = _start(cfg, stdout)
    assert proc.wait(timeout=timeout) == 0, stdout.read_text()


def _latest_step(out: Path) -> int:
    url = checkpoint.latest(str(out))
    return int(re.search(r"step-(\d+)$", url).group(1)) if url else 0


def _logged_steps(out: Path) -> int:
    try:
        return len((out / "log.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _log(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tokens_dir: Path, tmp_path: Path) -> None:
    # The uninterrupted run, through the same command line.
    _run(_config(tokens_dir, tmp_path / "straight", tmp_path / "straight.yaml"), tmp_path / "straight.out")
    want = {r["step"]: r["loss"] for r in _log((tmp_path / "straight" / "log.jsonl").read_text())}
    assert sorted(want) == list(range(1, STEPS + 1))

    # The drill: once a checkpoint exists and the run has logged a step after it, SIGKILL the whole
    # process group (no clean-up, no final checkpoint).
    out, cfg, stdout = tmp_path / "drill", _config(tokens_dir, tmp_path / "drill", tmp_path / "drill.yaml"), \
        tmp_path / "drill.out"
    proc = _start(cfg, stdout)
    deadline = time.monotonic() + 300
    while _latest_step(out) < 4 or _logged_steps(out) <= _latest_step(out):
        assert proc.poll() is None, f"the run ended before the drill could kill it:\n{stdout.read_text()}"
        assert time.monotonic() < deadline, stdout.read_text()
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    killed_at = _latest_step(out)
    assert 4 <= killed_at < STEPS, f"the kill did not land mid-run (latest checkpoint: step {killed_at})"
    killed_log = (out / "log.jsonl").read_text()
    assert killed_log.endswith("\n")  # one write per record: a kill never leaves half a line
    killed = _log(killed_log)
    assert [r["step"] for r in killed] == list(range(1, len(killed) + 1))
    assert len(killed) >= killed_at  # it may have logged steps after its last checkpoint
    assert all(r["loss"] == want[r["step"]] for r in killed)

    # The same command again: it resumes from the latest checkpoint and runs to the end.
    _run(cfg, stdout)
    m = re.search(r"resumed from \S+step-(\d+) at step (\d+)", stdout.read_text())
    assert m and int(m.group(1)) == int(m.group(2)) == killed_at, stdout.read_text()
    # The killed run's records past its checkpoint are dropped and logged again as they rerun:
    # each step once, with the uninterrupted run's losses.
    assert f"record(s) after step {killed_at} dropped" in stdout.read_text() or len(killed) == killed_at
    whole = _log((out / "log.jsonl").read_text())
    assert [r["step"] for r in whole] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in whole] == [want[s] for s in range(1, STEPS + 1)]  # equal, not close

    final = checkpoint.read_train_state(checkpoint.latest(str(out)))
    assert final["step"] == STEPS and final["scheduler"]["step"] == STEPS
    assert _latest_step(out) == STEPS
