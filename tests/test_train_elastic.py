"""Elastic resume (2 → 1 and 1 → 2 ranks, DDP and FSDP2, gloo) and a kill during a checkpoint save."""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from train import checkpoint
from train.config import Config
from train.stream import TokenLoader
from tests.support.token_shards import write_token_shards

SENTENCES = 16  # 2 units × 8, one 256-token image each: with seq_len 256 and aligned rows, one per row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record_sentences(path: str) -> None:
    """Log every sentence the stream hands out (epoch, shard, row group, row) to `path`."""
    from train import stream

    original = stream.SentenceStream.next

    def next_logged(self):  # noqa: ANN001, ANN202
        tokens, ref = original(self)
        with open(path, "a") as f:
            f.write(json.dumps([ref.epoch, ref.shard, ref.row_group, ref.row]) + "\n")
        return tokens, ref

    stream.SentenceStream.next = next_logged


def _run(rank: int, world: int, port: int, cfg_json: str, stop_after: int | None, log: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _record_sentences(f"{log}.rank{rank}")
    from train.loop import teardown_distributed, train

    train(Config.model_validate(json.loads(cfg_json)), stop_after)
    teardown_distributed()


def _phase(world: int, cfg: dict, stop_after: int | None, log: Path) -> None:
    args = (world, _free_port(), json.dumps(cfg), stop_after, str(log))
    if world == 1:
        ctx = multiprocessing.get_context("spawn")  # a clean process, as torchrun would start
        p = ctx.Process(target=_run, args=(0, *args))
        p.start()
        p.join(300)
        assert p.exitcode == 0
    else:
        mp.spawn(_run, args=args, nprocs=world, join=True)


def _consumed(log: Path) -> Counter:
    found: Counter = Counter()
    for f in sorted(log.parent.glob(log.name + ".rank*")):
        found.update(tuple(json.loads(line)) for line in f.read_text().splitlines())
    return found


def _config(tokens: Path, out: Path, parallel: str) -> dict:
    return {"model": {"size": "tiny", "max_seq_len": 256},
            # One open piece per consumer: a consumer then ends epoch 0 before it starts epoch 1, so
            # after one epoch's rows the sentences read are exactly epoch 0's.
            "data": {"tokens": [str(tokens)], "seq_len": 256, "align_sentences": True, "piece_rows": 4,
                     "open_pieces": 1},
            "optim": {"warmup_steps": 1},
            "train": {"out": str(out), "steps": SENTENCES // 2, "batch_size": 1, "global_batch": 2, "threads": 1,
                      "parallel": parallel, "log_every": 1, "ckpt_every": 100}}


@pytest.fixture(scope="module")
def tokens_and_straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter]:
    """The token data and what an uninterrupted run reads in one epoch (SENTENCES rows = 8 steps)."""
    root = tmp_path_factory.mktemp("elastic")
    write_token_shards(root / "tokens" / "t", "video", units=2, sentences_per_unit=SENTENCES // 2, images=(1, 1))
    _phase(2, _config(root, root / "straight", "ddp"), None, root / "straight")
    want = _consumed(root / "straight")
    assert sum(want.values()) == SENTENCES and set(want.values()) == {1} and {k[0] for k in want} == {0}
    return root, want


@pytest.mark.parametrize(("before", "after", "parallel", "async_save"),
                         [(2, 1, "ddp", False), (1, 2, "ddp", False), (2, 1, "fsdp", True), (1, 2, "fsdp", False)])
def test_resume_at_another_world_size_reads_each_sentence_once(tokens_and_straight: tuple[Path, Counter],
                                                               tmp_path: Path, before: int, after: int,
                                                               parallel: str, async_save: bool) -> None:
    # Interrupted after 3 steps at `before` ranks, resumed at `after` ranks with the same global batch.
    root, want = tokens_and_straight
    cfg = _config(root, tmp_path / "elastic", parallel)
    cfg["train"]["async_checkpoint"] = async_save  # 2 FSDP ranks saving in the background, on their own gloo group
    _phase(before, cfg, 3, tmp_path / "elastic")
    assert checkpoint.read_train_state(checkpoint.latest(str(tmp_path / "elastic")))["world"] == before
    _phase(after, cfg, None, tmp_path / "elastic")
    got = _consumed(tmp_path / "elastic")
    assert got == want  # the uninterrupted run's sentences: none repeated, none skipped
    final = checkpoint.read_train_state(checkpoint.latest(str(tmp_path / "elastic")))
    assert final["step"] == SENTENCES // 2 and final["world"] == after and final["global_batch"] == 2
    log = [json.loads(line) for line in (tmp_path / "elastic" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, SENTENCES // 2 + 1))


def test_stream_resplit_keeps_every_token_in_concatenated_packing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Concatenated rows cut sentences anywhere: what a consumer had packed but not emitted moves too.
    3 consumers run a while, 2 take over; every epoch-0 sentence is taken once, and the tokens in
    rows plus those still in the packers are exactly the taken sentences plus their end ids."""
    from train import stream

    write_token_shards(tmp_path / "tokens" / "t", "video", units=3, sentences_per_unit=7, images=(1, 3))
    data = Config.model_validate(_config(tmp_path, tmp_path / "o", "ddp")).data.model_copy(
        update={"seq_len": 100, "align_sentences": False, "open_pieces": 2})
    taken: list[tuple[int, int, int, int]] = []
    taken_tokens: Counter = Counter()
    original = stream.SentenceStream.next

    def next_logged(self):  # noqa: ANN001, ANN202
        tokens, ref = original(self)
        taken.append((ref.epoch, ref.shard, ref.row_group, ref.row))
        taken_tokens.update(tokens.tolist() + [data.eos_id])
        return tokens, ref

    monkeypatch.setattr(stream.SentenceStream, "next", next_logged)
    in_rows: Counter = Counter()

    def run(loader: TokenLoader, n: int, fresh: bool) -> None:
        for i in range(n):
            row = next(loader)[0].tolist()
            in_rows.update(row if fresh and i == 0 else row[1:])  # row[0] repeats the previous row's last

    old = [TokenLoader(data, 0, r, 3, 1) for r in range(3)]
    for lo in old:
        run(lo, 4, fresh=True)
    saved = json.loads(json.dumps([checkpoint.plain(lo.state_dict()) for lo in old]))  # as train_state.json
    new = [TokenLoader(data, 0, r, 2, 1) for r in range(2)]
    for lo in new:
        lo.load_global_state(saved)
        run(lo, 90, fresh=False)
    epoch0 = [t for t in taken if t[0] == 0]
    assert len(epoch0) == len(set(epoch0)) == 21  # every sentence of epoch 0 once
    assert {t[0] for t in taken} == {0, 1}  # ... and the run went on into epoch 1
    assert len({t for t in taken if t[0] == 1}) == len([t for t in taken if t[0] == 1])
    left: Counter = Counter()
    for lo in new:
        st = lo.state_dict()["states"][0]
        left.update(list(st["buf"][1:]) + list(st["carry"]) + ([data.eos_id] if st["carry_eos"] else []))
        for run_tokens, eos in st["queue"]:
            left.update(list(run_tokens) + ([data.eos_id] if eos else []))
    assert in_rows + left == taken_tokens


def test_resplit_from_dataloader_workers_to_fewer(tmp_path: Path) -> None:
    """Consumers are ranks × DataLoader workers: 2 workers → 1 worker re-splits the same way.
    Prefetched batches a worker made but training never took are not counted as read."""
    written = write_token_shards(tmp_path / "tokens" / "t", "video", units=2, sentences_per_unit=SENTENCES // 2,
                                 images=(1, 1))
    data = Config.model_validate(_config(tmp_path, tmp_path / "o", "ddp")).data
    rows: Counter = Counter()
    old = TokenLoader(data.model_copy(update={"num_workers": 2}), 0, 0, 1, 1)
    for _ in range(5):
        rows[tuple(next(old)[0, :-1].tolist())] += 1  # one sentence per row, then its end id
    saved = json.loads(json.dumps([checkpoint.plain(old.state_dict())]))
    new = TokenLoader(data, 0, 0, 1, 1)
    new.load_global_state(saved)
    for _ in range(SENTENCES - 5):
        rows[tuple(next(new)[0, :-1].tolist())] += 1
    assert rows == Counter(tuple(r["tokens"].tolist()) for r in written)
