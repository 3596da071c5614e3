"""Training never destroys its own checkpoints (issue #22.5): a lost or wrong `latest` pointer
resumes from the newest complete folder, pruning never touches later folders, an ambiguous folder
is refused, `--restart` moves the old run aside, and an async save that finished before an error
is still recorded."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from train import checkpoint
from train.config import Config
from train.loop import main as train_main
from train.loop import train
from train.stream import TokenLoader
from tests.support.token_shards import tiny_train_config, video_token_build


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_token_build(tmp_path_factory.mktemp("build"))


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def config(tokens: Path, out: Path, **train_kw) -> Config:
    return Config.model_validate(tiny_train_config(tokens, out, **{"steps": 8, **train_kw}))


def _log_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def six_steps(tokens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after 6 of 8 steps: checkpoints [4, 6], pointer at 6, log steps 1..6."""
    out = tmp_path_factory.mktemp("runs") / "six"
    train(config(tokens_dir, out), stop_after=6)
    assert checkpoint.steps_saved(str(out)) == [4, 6]
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _incomplete(out: Path, step: int) -> Path:
    """A folder as a save killed before DCP's metadata leaves it: shards, no .metadata."""
    folder = out / "checkpoints" / f"step-{step:08d}"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(b"partial shard")
    return folder


def test_missing_pointer_resumes_at_the_newest_complete_checkpoint(tokens_dir: Path, six_steps: Path,
                                                                   tmp_path: Path) -> None:
    out = _copy(six_steps, tmp_path)
    (out / "checkpoints" / "latest").unlink()
    rest = train(config(tokens_dir, out))
    assert [r["step"] for r in rest] == [7, 8]  # not a start from 0
    assert checkpoint.steps_saved(str(out)) == [6, 8]
    assert _log_steps(out) == list(range(1, 9))  # the log kept steps 1..6


def test_pointer_to_an_incomplete_folder_resumes_at_the_newest_complete_one(tokens_dir: Path, six_steps: Path,
                                                                          tmp_path: Path) -> None:
    out = _copy(six_steps, tmp_path)
    _incomplete(out, 8)
    (out / "checkpoints" / "latest").write_text("step-00000008\n")
    assert checkpoint.latest(str(out)).endswith("step-00000006")
    rest = train(config(tokens_dir, out))
    assert [r["step"] for r in rest] == [7, 8]
    assert checkpoint.steps_saved(str(out)) == [6, 8]  # step 8 rewritten whole


def test_later_folders_are_never_pruned_and_a_newer_incomplete_one_is_ignored(tokens_dir: Path, six_steps: Path,
                                                                             tmp_path: Path) -> None:
    out = _copy(six_steps, tmp_path)
    later = _incomplete(out, 10)
    assert checkpoint.latest(str(out)).endswith("step-00000006")  # the incomplete step 10 is not a candidate
    (out / "checkpoints" / "latest").write_text("step-00000004\n")  # rewound by hand
    rest = train(config(tokens_dir, out), stop_after=1)  # resumes at 4, saves 5, prunes
    assert [r["step"] for r in rest] == [5]
    assert checkpoint.steps_saved(str(out)) == [4, 5, 6]  # step 6 (after the resume point) kept
    assert (later / "__0_0.distcp").exists()
    assert _log_steps(out) == [1, 2, 3, 4, 5]


def test_an_ambiguous_folder_is_refused_and_nothing_is_touched(tokens_dir: Path, six_steps: Path,
                                                              tmp_path: Path) -> None:
    out = _copy(six_steps, tmp_path)
    for step in (4, 6):
        (out / "checkpoints" / f"step-{step:08d}" / ".metadata").unlink()  # every checkpoint lost its metadata
    log_before = (out / "log.jsonl").read_text()
    with pytest.raises(checkpoint.AmbiguousCheckpoints, match="--restart"):
        train(config(tokens_dir, out))
    assert (out / "log.jsonl").read_text() == log_before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000004", "step-00000006"]
    (out / "checkpoints" / "latest").write_text("not a step\n")
    with pytest.raises(checkpoint.AmbiguousCheckpoints, match="not a step"):
        checkpoint.latest(str(out))


def test_restart_moves_the_old_run_aside(tokens_dir: Path, six_steps: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = _copy(six_steps, tmp_path)
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(json.dumps(config(tokens_dir, out).model_dump(mode="json")))  # JSON is YAML
    assert train_main([str(cfg_file), "--stop-after", "2", "--restart"]) == 0
    aside = [p for p in out.iterdir() if p.name.startswith("before-restart-")]
    assert len(aside) == 1
    assert sorted(p.name for p in (aside[0] / "checkpoints").iterdir()) == ["latest", "step-00000004", "step-00000006"]
    assert [json.loads(x)["step"] for x in (aside[0] / "log.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert checkpoint.steps_saved(str(out)) == [2]  # started at step 0
    assert _log_steps(out) == [1, 2]


def test_an_async_save_that_finished_is_recorded_when_training_raises(tokens_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    real_next = TokenLoader.__next__
    calls = {"n": 0}

    def failing_next(self: TokenLoader) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:  # step 4's batch: the async save of step 2 is in flight or finished, unrecorded
            raise RuntimeError("data error")
        return real_next(self)

    monkeypatch.setattr(TokenLoader, "__next__", failing_next)
    with pytest.raises(RuntimeError, match="data error"):
        train(config(tokens_dir, out, async_checkpoint=True))
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000002"
    assert checkpoint.steps_saved(str(out)) == [2]
