"""log.jsonl after a kill: a run resumed at step N drops the records past N it will log again."""
from __future__ import annotations

import json
from pathlib import Path

from train.run_log import RunLog


def _write(path: Path, steps: list[int], torn: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps)
    path.write_text(text + ('{"step": 9, "lo' if torn else ""))


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_resume_drops_records_after_the_checkpoint_and_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "run" / "log.jsonl"
    _write(log, [1, 2, 3, 4, 5], torn=True)
    run = RunLog(str(tmp_path / "run"), enabled=True, resumed_at=3)
    assert _steps(log) == [1, 2, 3]
    run.log({"step": 4, "loss": 0.25})
    assert _steps(log) == [1, 2, 3, 4]


def test_a_fresh_start_over_a_killed_runs_log_starts_it_again(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    _write(log, [1, 2])  # killed before its first checkpoint
    RunLog(str(tmp_path), enabled=True, resumed_at=0)
    assert log.read_text() == ""


def test_other_ranks_leave_the_log_alone(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    _write(log, [1, 2, 3])
    RunLog(str(tmp_path), enabled=False, resumed_at=1).log({"step": 2, "loss": 0.5})
    assert _steps(log) == [1, 2, 3]
