"""The training loop: loss falls on a learnable token set; stop + resume equals an uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from train import checkpoint
from train.config import Config, load_train_config
from train.loop import lr_at, train
from tests.support.token_shards import tiny_train_config, video_token_build
from uvd import cli


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_token_build(tmp_path_factory.mktemp("build"))


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the test machine is shared: two spinning OpenMP threads are slower


def config(tokens: Path, out: Path, **train_kw) -> dict:
    return tiny_train_config(tokens, out, **{"steps": 30, "batch_size": 4, "log_every": 5, "ckpt_every": 100,
                                             **train_kw})


def test_uvd_train_loss_falls_below_bound(tokens_dir: Path, tmp_path: Path) -> None:
    """The codes count up modulo 64 from a random start per image: after the first code of an
    image the next one is certain. Chance is ln(8292) ≈ 9.0 nats; we require < 3.0 in 30 steps."""
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(config(tokens_dir, tmp_path / "run")))
    assert cli.main(["train", str(cfg_file)]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30]
    assert log[-1]["loss"] < 3.0
    assert log[0]["loss"] > log[-1]["loss"] + 3.0
    assert all(r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in log)
    ck = checkpoint.load_full(str(tmp_path / "run"))
    assert ck["train_state"]["step"] == 30 and ck["train_state"]["scheduler"]["step"] == 30
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp-*"))  # written atomically


def test_resume_matches_an_uninterrupted_run(tokens_dir: Path, tmp_path: Path) -> None:
    k, j = 3, 3
    straight = Config.model_validate(config(tokens_dir, tmp_path / "a", steps=k + j, batch_size=2, grad_accum=2))
    want = [r["loss"] for r in train(straight)]
    interrupted = Config.model_validate(config(tokens_dir, tmp_path / "b", steps=k + j, batch_size=2, grad_accum=2))
    first = train(interrupted, stop_after=k)
    assert [r["step"] for r in first] == [1, 2, 3]
    assert checkpoint.latest(str(tmp_path / "b")).endswith("step-00000003")
    rest = train(interrupted)  # a fresh call: model, optimizer, schedule, data and RNG from the checkpoint
    assert [r["step"] for r in rest] == [4, 5, 6]
    assert [r["loss"] for r in first + rest] == want  # equal, not close: the same computation


def test_schedule_and_config_errors(tmp_path: Path) -> None:
    cfg = Config.model_validate({"data": {"tokens": ["x"]}, "train": {"steps": 100},
                                 "optim": {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10}})
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # half way down the cosine
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {tokens: [x]}\ntrain: {stepz: 3}\n")
    assert cli.main(["train", str(bad)]) == 2
    with pytest.raises(ValueError, match="train.stepz: unknown key"):
        load_train_config(bad)
    lvm = load_train_config(Path(__file__).parent.parent / "configs" / "train_lvm_300m.yaml")
    assert lvm.optim.lr == 1.5e-4 and lvm.optim.min_lr == 3e-5 and lvm.optim.warmup_steps == 8000
    assert lvm.data.seq_len == 4096 and lvm.model.size == "300m"
