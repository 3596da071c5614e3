"""Real 2-process DDP and FSDP2 runs on CPU (gloo), through the same `train()` torchrun starts."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from train import checkpoint
from tests.support.token_shards import write_token_shards


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_json: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from train.config import Config
    from train.loop import teardown_distributed, train

    records = train(Config.model_validate(json.loads(cfg_json)))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]  # what torch.compile captured
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps({"losses": [r["loss"] for r in records],
                                                                "graphs": graphs}))
    teardown_distributed()


def _config(tmp_path: Path, parallel: str) -> dict:
    return {"model": {"size": "tiny", "max_seq_len": 128},
            "data": {"tokens": [str(tmp_path)], "seq_len": 64, "piece_rows": 4},
            "optim": {"warmup_steps": 1},
            "train": {"out": str(tmp_path / parallel), "steps": 3, "batch_size": 2, "threads": 1,
                      "parallel": parallel}}


def _two_ranks(cfg: dict, tmp_path: Path) -> dict:
    """Train on 2 gloo ranks; rank 0's result (losses, graphs compiled)."""
    mp.spawn(_worker, args=(2, _free_port(), json.dumps(cfg), str(tmp_path)), nprocs=2, join=True)
    return json.loads((tmp_path / "rank0.json").read_text())


def test_two_rank_gloo_ddp_and_fsdp(tmp_path: Path) -> None:
    write_token_shards(tmp_path / "tokens" / "t", "video", units=2, sentences_per_unit=12, images=(1, 2))
    r0 = _two_ranks(_config(tmp_path, "ddp"), tmp_path)
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert len(r0["losses"]) == 3 and r0["losses"] == r1["losses"]  # all-reduced: every rank logs the same
    ck = checkpoint.load_full(str(tmp_path / "ddp"))
    ts = ck["train_state"]
    assert len(ts["data"]) == 2 and len(ts["rng"]) == 2  # every rank's stream position is kept
    assert ts["data"][0]["world"] == 2
    s0, s1 = ts["data"][0]["states"]["0"], ts["data"][1]["states"]["0"]
    assert s0 != s1  # the two ranks read different sentences

    # FSDP2 shards the same model over the same two ranks: the same losses, and a checkpoint
    # gathered to full tensors that a single process can load.
    f0 = _two_ranks(_config(tmp_path, "fsdp"), tmp_path)
    assert f0["losses"] == pytest.approx(r0["losses"], rel=1e-5)
    fck = checkpoint.load_full(str(tmp_path / "fsdp"))
    w = fck["model"]["model.layers.0.mlp.up_proj.weight"]
    assert tuple(w.shape) == (176, 64)  # full, not a shard
    assert torch.allclose(w, ck["model"]["model.layers.0.mlp.up_proj.weight"], atol=1e-5)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torch_compile_of_the_wrapped_model_gives_the_eager_losses(tmp_path: Path, parallel: str) -> None:
    # `train.compile` (on by default on GPU) compiles the DDP- or FSDP2-wrapped model whole:
    # inductor's CPU kernels here, in fp32, must train as eager does.
    write_token_shards(tmp_path / "tokens" / "t", "video", units=2, sentences_per_unit=12, images=(1, 2))
    losses, graphs = {}, {}
    for compile_ in ("auto", True):  # auto: eager on CPU
        cfg = _config(tmp_path, parallel)
        cfg["train"].update(compile=compile_, out=str(tmp_path / f"{parallel}-{compile_}"))
        result = _two_ranks(cfg, tmp_path)
        losses[compile_], graphs[compile_] = result["losses"], result["graphs"]
    assert graphs["auto"] == 0 and graphs[True] > 0
    assert len(losses[True]) == 3 and losses[True] == pytest.approx(losses["auto"], rel=1e-4)


def test_gradient_accumulation_on_two_ranks_ddp_trains_as_fsdp(tmp_path: Path) -> None:
    # Two micro-batches per step on each of two ranks (as configs/train_lvm_300m.yaml on 8 GPUs):
    # DDP skips the all-reduce of the first (no_sync), FSDP2 its reduce-scatter; the same rows,
    # so the same losses (DDP's no_sync context used to be entered twice, and raised).
    write_token_shards(tmp_path / "tokens" / "t", "video", units=2, sentences_per_unit=12, images=(1, 2))
    losses = {}
    for parallel in ("ddp", "fsdp"):
        cfg = _config(tmp_path, parallel)
        cfg["train"].update(batch_size=1, global_batch=4, steps=3)
        losses[parallel] = _two_ranks(cfg, tmp_path)["losses"]
        assert checkpoint.read_train_state(checkpoint.latest(str(tmp_path / parallel)))["global_batch"] == 4
    assert len(losses["ddp"]) == 3 and losses["ddp"] == pytest.approx(losses["fsdp"], rel=1e-5)
