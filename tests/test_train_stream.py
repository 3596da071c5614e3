"""The token stream: coverage across ranks × workers, EOS, packing, mixture, exact resume."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from train.config import DataConfig, MixtureConfig
from train.shards_index import build_index
from train.stream import SentenceStream, TokenLoader, make_packer
from tests.support.token_shards import write_token_shards

EOS, PAD = 8193, 8192


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build")
    tok = root / "tokens" / "test-tokenizer"
    # Several files, several row groups per file (7 rows each), uneven sizes, two sources.
    write_token_shards(tok, "video", units=3, sentences_per_unit=23, images=(1, 3), row_group_rows=7)
    write_token_shards(tok, "photos", units=1, sentences_per_unit=9, images=(1, 1), seed=1)
    return root


def cfg(root: Path, **kw) -> DataConfig:
    base = {"tokens": [str(root)], "seq_len": 256, "piece_rows": 4, "open_pieces": 2}
    return DataConfig(**{**base, **kw})


def test_two_ranks_two_workers_read_every_sentence_once_per_epoch(tokens_dir: Path) -> None:
    c = cfg(tokens_dir)
    index = build_index(c.tokens, None, c.piece_rows)
    total = index.rows["all"]
    assert total == 3 * 23 + 9
    world, workers = 2, 2
    seen: Counter = Counter()
    per_consumer = []
    for rank in range(world):
        for worker in range(workers):
            stream = SentenceStream(index, c, seed=5, consumer=rank * workers + worker, consumers=world * workers)
            refs = [stream.next()[1] for _ in range(total + 2 * c.piece_rows * c.open_pieces)]
            mine = [(r.shard, r.row_group, r.row) for r in refs if r.epoch == 0]
            per_consumer.append(len(mine))
            seen.update(mine)
    assert sum(seen.values()) == total  # nothing read twice in the epoch ...
    assert len(seen) == total  # ... and nothing missed
    assert all(n > 0 for n in per_consumer)  # every consumer had work


def test_loader_workers_are_the_consumers_of_the_split(tokens_dir: Path) -> None:
    """A rank's DataLoader with 2 workers yields, in turn, what consumers rank*2 and rank*2+1 pack."""
    c = cfg(tokens_dir, num_workers=2)
    index = build_index(c.tokens, None, c.piece_rows)
    loader = TokenLoader(c, seed=3, rank=1, world=2, batch_size=2, index=index)
    got = [next(loader).numpy() for _ in range(4)]
    packers = [make_packer(index, c, 3, consumer, 4) for consumer in (2, 3)]
    row = np.empty(c.seq_len + 1, np.int32)
    for i, batch in enumerate(got):
        for b in range(2):
            packers[i % 2].next_row(row)
            np.testing.assert_array_equal(batch[b], row)


def test_concatenated_rows_are_sentences_with_eos(tokens_dir: Path) -> None:
    c = cfg(tokens_dir)
    index = build_index(c.tokens, None, c.piece_rows)
    reference = SentenceStream(index, c, seed=0, consumer=0, consumers=1)
    expected = np.concatenate([np.append(reference.next()[0], EOS) for _ in range(40)])
    packer = make_packer(index, c, 0, 0, 1)
    rows = np.empty((20, c.seq_len + 1), np.int32)
    for r in rows:
        packer.next_row(r)
    # Rows overlap by one token: a row's last token is the next row's first.
    assert (rows[1:, 0] == rows[:-1, -1]).all()
    stream = np.concatenate([rows[0], *[r[1:] for r in rows[1:]]])
    np.testing.assert_array_equal(stream, expected[:len(stream)])
    assert (stream == EOS).sum() >= 10 and not (stream == PAD).any()


def test_aligned_rows_start_at_sentence_starts(tokens_dir: Path) -> None:
    c = cfg(tokens_dir, align_sentences=True, seq_len=600)
    index = build_index(c.tokens, None, c.piece_rows)
    reference = SentenceStream(index, c, seed=0, consumer=0, consumers=1)
    sentences = [reference.next()[0] for _ in range(30)]
    packer = make_packer(index, c, 0, 0, 1)
    rows = np.empty((12, c.seq_len + 1), np.int32)
    for r in rows:
        packer.next_row(r)
    unpadded = [r[r != PAD] for r in rows]
    flat = np.concatenate(unpadded)
    expected = np.concatenate([np.append(s, EOS) for s in sentences])
    # Sentences of up to 3 images (769 tokens) are longer than a row: they continue in the next.
    np.testing.assert_array_equal(flat, expected[:len(flat)])
    starts = np.cumsum([0] + [len(s) + 1 for s in sentences])
    row_starts = np.cumsum([0] + [len(u) for u in unpadded])[:-1]
    for k, (r, start) in enumerate(zip(rows, row_starts)):
        pads = np.flatnonzero(r == PAD)
        if len(pads):  # padding only at the end of a row, and only after an EOS
            assert (pads == np.arange(pads[0], len(r))).all() and r[pads[0] - 1] == EOS
        if k and rows[k - 1][-1] in (PAD, EOS):  # the previous row ended a sentence → a new one starts here
            assert start in starts


def test_mixture_holds_token_shares(tokens_dir: Path) -> None:
    mix = MixtureConfig(by="source", weights={"video": 0.3, "photos": 0.7})
    c = cfg(tokens_dir, mixture=mix)
    index = build_index(c.tokens, "source", c.piece_rows)
    assert set(index.groups) == {"video", "photos"}
    stream = SentenceStream(index, c, seed=0, consumer=0, consumers=1)
    tokens: Counter = Counter()
    for _ in range(600):
        t, ref = stream.next()
        tokens[ref.group] += len(t) + 1
    share = tokens["photos"] / sum(tokens.values())
    # Natural share of photos is ~9 one-image sentences in 78 (≈ 6%); the mixture asks 70%.
    # Deficit interleaving keeps the error within one sentence (≤ 769 tokens) of the total.
    assert abs(share - 0.7) < 769 / sum(tokens.values()) + 1e-9
    assert abs(share - 0.7) < 0.01


def test_mixture_by_task_within_files(tmp_path: Path) -> None:
    write_token_shards(tmp_path / "tokens" / "t", "coco", units=2, sentences_per_unit=20,
                       tasks=["detection", "pose", "segmentation", "pose"], images=(2, 2))
    mix = MixtureConfig(by="task", weights={"detection": 1, "pose": 1}, default=2)
    c = cfg(tmp_path, mixture=mix)
    index = build_index(c.tokens, "task", c.piece_rows)
    assert index.rows == {"detection": 10, "pose": 20, "segmentation": 10}
    stream = SentenceStream(index, c, seed=0, consumer=0, consumers=1)
    groups = Counter(stream.next()[1].group for _ in range(400))
    assert groups == {"segmentation": 200, "detection": 100, "pose": 100}  # equal-length sentences


def test_mixture_errors_are_clear(tokens_dir: Path) -> None:
    index = build_index([str(tokens_dir)], "source", 4)
    with pytest.raises(ValueError, match="not in the data: \\['vidoe'\\]"):
        SentenceStream(index, cfg(tokens_dir, mixture=MixtureConfig(weights={"vidoe": 1, "photos": 1})), 0, 0, 1)
    with pytest.raises(ValueError, match="no weight to source groups \\['video'\\]"):
        SentenceStream(index, cfg(tokens_dir, mixture=MixtureConfig(weights={"photos": 1})), 0, 0, 1)


@pytest.mark.parametrize("align", [False, True])
def test_state_dict_resumes_exactly_mid_epoch(tokens_dir: Path, align: bool) -> None:
    c = cfg(tokens_dir, align_sentences=align, mixture=MixtureConfig(weights={"video": 2, "photos": 1}))
    index = build_index(c.tokens, "source", c.piece_rows)
    row = np.empty(c.seq_len + 1, np.int32)
    first = make_packer(index, c, 9, 1, 3)
    for _ in range(17):  # mid-sentence, mid-piece, mid-epoch
        first.next_row(row)
    state = first.state_dict()
    after = []
    for _ in range(40):  # through the end of the epoch and into the next
        first.next_row(row)
        after.append(row.copy())
    resumed = make_packer(index, c, 9, 1, 3)
    resumed.load_state_dict(state)
    for want in after:
        resumed.next_row(row)
        np.testing.assert_array_equal(row, want)


def test_loader_state_resumes_with_workers(tokens_dir: Path) -> None:
    c = cfg(tokens_dir, num_workers=2)
    index = build_index(c.tokens, None, c.piece_rows)
    loader = TokenLoader(c, seed=1, rank=0, world=1, batch_size=2, index=index)
    for _ in range(3):  # an odd count: the next batch is worker 1's turn
        next(loader)
    state = loader.state_dict()
    want = [next(loader).numpy() for _ in range(4)]
    fresh = TokenLoader(c, seed=1, rank=0, world=1, batch_size=2, index=index)
    fresh.load_state_dict(state)
    for w in want:
        np.testing.assert_array_equal(next(fresh).numpy(), w)
    other = TokenLoader(cfg(tokens_dir, num_workers=1), seed=1, rank=0, world=1, batch_size=2, index=index)
    with pytest.raises(ValueError, match="workers"):
        other.load_state_dict(state)


def test_seed_changes_order_not_content(tokens_dir: Path) -> None:
    c = cfg(tokens_dir)
    index = build_index(c.tokens, None, c.piece_rows)
    total = index.rows["all"]
    orders = []
    for seed in (0, 0, 1):
        s = SentenceStream(index, c, seed=seed, consumer=0, consumers=1)
        refs = [s.next()[1] for _ in range(total + 8)]
        orders.append([(r.shard, r.row_group, r.row) for r in refs if r.epoch == 0])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2] and sorted(orders[0]) == sorted(orders[2])


def test_bad_token_ids_and_missing_shards_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no committed token shards"):
        build_index([str(tmp_path)], None, 4)
    rows = write_token_shards(tmp_path / "tok", "x", units=1, sentences_per_unit=2)
    assert rows
    # An uncommitted part (no stats file) is not read.
    (tmp_path / "tok" / "x" / "part-00009.parquet").write_bytes(b"half written")
    index = build_index([str(tmp_path / "tok")], None, 4)
    assert len(index.shards) == 1
    c = cfg(tmp_path / "tok")
    stream = SentenceStream(index, c, 0, 0, 1, codebook=8)  # the pattern codes go up to 63
    with pytest.raises(ValueError, match="part-00000.parquet: row group 0 has token ids >= codebook size 8"):
        stream.next()


def _token_manifest(root: Path, tokenizer_id: str, units: tuple[int, ...]) -> None:
    """A tokens manifest (manifest.json + units table) listing `units` of source `video`, as the job writes it."""
    from uvd.engine import find_committed
    from uvd.layout import UnitLayout
    from uvd.manifest import write_manifest
    from uvd.plan import PlannedUnit

    planned = [PlannedUnit("video", f"{u:05d}", {}) for u in units]
    layout = UnitLayout.tokens(str(root))
    write_manifest(layout, {"kind": "tokens", "tokenizer": {"tokenizer_id": tokenizer_id}}, planned,
                   find_committed(layout, planned, lambda u: {}))


def test_manifest_lists_the_shards_and_tokenizers_do_not_mix(tmp_path: Path) -> None:
    from train.shards_index import find_token_shards

    tok = tmp_path / "build" / "tokens" / "vq-a"
    write_token_shards(tok, "video", units=3, sentences_per_unit=2)
    _token_manifest(tok, "vq-a", units=(0, 2))
    # Listed units are found in the folder's own layout (it may have moved); part 1 is not listed.
    assert [Path(p).name for p in find_token_shards([str(tmp_path / "build")])] == ["part-00000.parquet",
                                                                                   "part-00002.parquet"]
    write_token_shards(tmp_path / "build" / "tokens" / "vq-b", "video", units=1, sentences_per_unit=2)
    with pytest.raises(ValueError, match="2 tokenizers' tokens \\['vq-a', 'vq-b'\\]"):
        find_token_shards([str(tmp_path / "build")])
    _token_manifest(tmp_path / "build" / "tokens" / "vq-b", "vq-b", units=(0,))
    with pytest.raises(ValueError, match="different tokenizers"):
        find_token_shards([str(tok), str(tmp_path / "build" / "tokens" / "vq-b")])
