"""Sharded DCP checkpoints: a kill during a save keeps the previous one; async save; keep K; one file."""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from train import checkpoint
from train.config import Config
from train.loop import train
from tests.support.token_shards import tiny_train_config, video_token_build


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_token_build(tmp_path_factory.mktemp("build"))


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)




def _die_while_saving(cfg_json: str, doomed: str) -> None:
    """Train; when the save of `doomed` has written its shards but not DCP's .metadata, die at once."""
    torch.set_num_threads(1)
    from train import checkpoint as ck

    make = ck.writer

    def writer(url: str):  # noqa: ANN202
        w = make(url)
        if url.endswith(doomed):
            def finish(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                os._exit(9)  # as a SIGKILL would: no clean-up, no exception handlers
            w.finish = finish
        return w

    ck.writer = writer
    train(Config.model_validate(json.loads(cfg_json)))


def test_kill_during_save_keeps_the_previous_checkpoint(tokens_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_train_config(tokens_dir, out)
    p = multiprocessing.get_context("spawn").Process(target=_die_while_saving, args=(json.dumps(cfg), "step-00000004"))
    p.start()
    p.join(300)
    assert p.exitcode == 9
    doomed = out / "checkpoints" / "step-00000004"
    assert list(doomed.glob("*.distcp")) and not (doomed / ".metadata").exists()  # shards written, not committed
    assert checkpoint.latest(str(out)).endswith("step-00000002")
    full = checkpoint.load_full(str(out))
    assert full["train_state"]["step"] == 2 and "model.layers.0.mlp.up_proj.weight" in full["model"]

    rest = train(Config.model_validate(cfg))  # resumes from step 2, rewrites step 4, runs to 6
    assert [r["step"] for r in rest] == [3, 4, 5, 6]
    straight = train(Config.model_validate(tiny_train_config(tokens_dir, tmp_path / "straight")))
    assert [r["loss"] for r in rest] == [r["loss"] for r in straight[2:]]
    assert checkpoint.steps_saved(str(out)) == [4, 6]  # keep 2: step 2 pruned


def test_async_save_resumes_exactly_and_converts_to_one_file(tokens_dir: Path, tmp_path: Path) -> None:
    straight = [r["loss"] for r in train(Config.model_validate(tiny_train_config(tokens_dir, tmp_path / "a")))]
    cfg = Config.model_validate(tiny_train_config(tokens_dir, tmp_path / "b", async_checkpoint=True))
    first = train(cfg, stop_after=4)
    assert checkpoint.steps_saved(str(tmp_path / "b")) == [2, 4]
    rest = train(cfg)
    assert [r["loss"] for r in first + rest] == straight
    one = tmp_path / "model.pt"
    checkpoint.to_single_file(str(tmp_path / "b"), str(one), step=4)
    state = torch.load(one, weights_only=True)
    assert state["train_state"]["step"] == 4
    assert tuple(state["model"]["model.layers.1.self_attn.q_proj.weight"].shape) == (64, 64)
    assert state["optim"]["state"]  # AdamW moments, full tensors
    with pytest.raises(FileNotFoundError, match="step 3"):
        checkpoint.resolve(str(tmp_path / "b"), 3)


def test_a_run_with_old_single_file_checkpoints_is_refused_not_restarted(tokens_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step-00000010.pt").write_bytes(b"old format")
    (out / "checkpoints" / "latest").write_text("step-00000010.pt\n")
    with pytest.raises(ValueError, match="earlier version"):
        train(Config.model_validate(tiny_train_config(tokens_dir, out)))
    assert not (out / "log.jsonl").exists()


def test_async_saves_reuse_one_staging_copy_and_write_each_steps_values(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    ck = checkpoint.Checkpointer(out, keep=3, async_save=True)
    w = {"w": torch.ones(4096), "m": torch.zeros(64, 64)}
    ck.save(1, w, {"step": 1})
    stager = ck._stager
    w["w"].add_(1)  # the next "optimizer step", right after save() returns: must not reach step 1
    w["m"].fill_(7)
    ck.save(2, w, {"step": 2})
    assert ck._stager is stager  # one staging copy for the run, refilled in place
    w["w"].add_(1)
    ck.close()
    for step, (wv, mv) in {1: (1.0, 0.0), 2: (2.0, 7.0)}.items():
        got = {"w": torch.empty(4096), "m": torch.empty(64, 64)}
        checkpoint.load_into(checkpoint.checkpoint_url(out, step), got)
        assert torch.all(got["w"] == wv) and torch.all(got["m"] == mv), step
    assert checkpoint.latest(out).endswith("step-00000002")
