"""A training run whose folder is on S3 (moto on loopback): DCP checkpoints through fsspec, resume,
keep K, export; the log goes up once per checkpoint instead of being re-uploaded per record."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from tests.support.cluster import moto_s3
from tests.support.token_shards import tiny_train_config, video_token_build
from train import checkpoint
from train.config import Config
from train.export_hf import export_hf
from train.hf_format import load_hf
from train.loop import train
from uvd import storage


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return video_token_build(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def s3() -> Iterator[None]:
    with moto_s3():
        yield


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def config(tokens: Path, out: str, **train_kw) -> Config:
    return Config.model_validate(tiny_train_config(tokens, out, **train_kw))


@pytest.mark.parametrize("async_save", [False, True])
def test_run_on_s3_resumes_exactly_keeps_k_and_exports(s3: None, tokens_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, async_save: bool) -> None:
    straight = [r["loss"] for r in train(config(tokens_dir, str(tmp_path / "local")))]
    log_uploads: list[str] = []
    write_bytes = storage.write_bytes

    def counted(url: str, data: bytes) -> None:
        if url.endswith("log.jsonl"):
            log_uploads.append(url)
        write_bytes(url, data)

    monkeypatch.setattr(storage, "write_bytes", counted)
    out = f"s3://uvd/run-{int(async_save)}"
    first = train(config(tokens_dir, out, async_checkpoint=async_save), stop_after=3)  # saves at 2 and 3
    assert checkpoint.steps_saved(out) == [2, 3]
    assert checkpoint.latest(out) == f"{out}/checkpoints/step-00000003"
    rest = train(config(tokens_dir, out, async_checkpoint=async_save))  # resumes at 3; saves at 4 and 6
    assert [r["loss"] for r in first + rest] == straight  # equal, not close
    assert checkpoint.steps_saved(out) == [4, 6]  # keep 2

    fs, path = storage.fs_and_path(f"{out}/log.jsonl")
    logged = [line for line in fs.cat_file(path).decode().splitlines()]
    assert len(logged) == 6 and '"step": 6' in logged[-1]
    assert len(log_uploads) == 4  # one per checkpoint, not one per record

    folder = export_hf(out, 4, str(tmp_path / "hf"))
    model, _ = load_hf(folder)
    want = checkpoint.load_full(out, 4)["model"]
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
