"""The trainer's token index from the tokenize job's index table (issue #29): no shard footer opened,
the same pieces, order and fingerprint as the footer-by-footer index of e966806, dedup applied by
lookup, only the plan's units, and one index per job shared with ranks and workers."""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fsspec.implementations.local import LocalFileSystem

from tokenize_job.job import tokenize
from tokenize_job.token_index import INDEX_TABLE, dedup_key, read_index
from tokenize_job.vqgan import VQGAN, VQGANConfig
from train.config import DataConfig, MixtureConfig
from train.piece_table import Piece, TokenIndex
from train.shards_index import build_index, find_token_shards
from train.stream import make_packer
from tests.support.token_shards import write_token_shards, write_tokens_manifest
from tests.support.tokenizer import build_sentences
from uvd.dedup import CONTENT_TABLE, DEDUP_SCHEMA, build_root, dropped_ids
from uvd.layout import UnitLayout
from uvd.manifest import unit_row, write_manifest
from uvd.schema import read_metadata
from uvd.shards import open_parquet


# ---- the index as e966806 built it (train/shards_index.py), one footer after another: the reference ----

class _Reference:
    def __init__(self, shards: list[str]) -> None:
        self.shards, self.groups, self.rows, self.fingerprint = shards, {}, {}, ""


def _ref_group_keys(table: pa.Table, by: str | None) -> tuple[list[str], np.ndarray]:
    if by is None:
        return ["all"], np.zeros(table.num_rows, np.int64)
    cols = ["source", "task"] if by == "source_task" else [by]
    names, codes = [], []
    for c in cols:
        arr = table.column(c).combine_chunks()
        if not pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_encode()
        names.append(arr.dictionary.to_pylist())
        codes.append(arr.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    if len(cols) == 1:
        return names[0], codes[0]
    return [f"{a}/{b}" for a in names[0] for b in names[1]], codes[0] * len(names[1]) + codes[1]


def _ref_not_dropped(pf: pq.ParquetFile, rg: int, skip: set[str]) -> np.ndarray | None:
    if not skip:
        return None
    ids = pf.read_row_group(rg, columns=["sentence_id"], use_threads=False).column("sentence_id").to_pylist()
    if not skip.intersection(ids):
        return None
    return np.array([i for i, sid in enumerate(ids) if sid not in skip], dtype=np.int64)


def _ref_add(index: _Reference, group: str, shard: int, rg: int, rows: np.ndarray | None, n: int,
             piece_rows: int) -> None:
    pieces = index.groups.setdefault(group, [])
    if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        n, start, rows = len(rows), int(rows[0]), None
    else:
        start = 0
    total = n if rows is None else len(rows)
    for lo in range(0, total, piece_rows):
        hi = min(total, lo + piece_rows)
        pieces.append(Piece(shard, rg, (start + lo, start + hi) if rows is None else rows[lo:hi].copy()))
    index.rows[group] = index.rows.get(group, 0) + total


def reference_index(roots: list[str], by: str | None, piece_rows: int) -> _Reference:
    shards = find_token_shards(roots)
    index = _Reference(shards)
    h = hashlib.sha256()
    for si, url in enumerate(shards):
        with open_parquet(url) as pf:
            skip = dropped_ids(build_root(read_metadata(pf.schema_arrow).get("sentences", "")))
            for rg in range(pf.num_row_groups):
                n = pf.metadata.row_group(rg).num_rows
                h.update(json.dumps([url, rg, n]).encode())
                kept = _ref_not_dropped(pf, rg, skip)
                if kept is not None:
                    h.update(json.dumps(kept.tolist()).encode())
                if by is None:
                    _ref_add(index, "all", si, rg, kept, n, piece_rows)
                    continue
                names, codes = _ref_group_keys(pf.read_row_group(rg, columns=["source", "task"]), by)
                for code in np.unique(codes):
                    rows = np.flatnonzero(codes == code)
                    _ref_add(index, names[int(code)], si, rg, rows if kept is None else np.intersect1d(rows, kept),
                             n, piece_rows)
    index.fingerprint = h.hexdigest()[:16]
    return index


# ---- helpers ----

def _pieces(pieces: Any) -> list[tuple[int, int, Any]]:
    return [(p.shard, p.row_group, p.rows if isinstance(p.rows, tuple) else [int(r) for r in p.rows])
            for p in pieces]


def assert_same_index(got: Any, want: Any) -> None:
    assert list(got.shards) == list(want.shards)
    assert got.fingerprint == want.fingerprint
    assert got.rows == want.rows
    assert set(got.groups) == set(want.groups)
    for g in want.groups:
        assert _pieces(got.groups[g]) == _pieces(want.groups[g]), g


def assert_same_batches(got: Any, want: Any, cfg: DataConfig, consumers: int = 2, rows: int = 12) -> None:
    for consumer in range(consumers):
        a, b = make_packer(got, cfg, 7, consumer, consumers), make_packer(want, cfg, 7, consumer, consumers)
        ra, rb = np.empty(cfg.seq_len + 1, np.int32), np.empty(cfg.seq_len + 1, np.int32)
        for _ in range(rows):
            a.next_row(ra)
            b.next_row(rb)
            np.testing.assert_array_equal(ra, rb)


class Opens:
    """Counts Parquet files opened (ParquetFile, read_table) and token shards opened through fsspec."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parquet: list[str] = []
        self.shards: list[str] = []
        real_pf, real_open = pq.ParquetFile, LocalFileSystem._open
        opens = self

        class CountingParquetFile(real_pf):  # type: ignore[misc, valid-type]
            def __init__(self, source: Any, *a: Any, **kw: Any) -> None:
                opens.parquet.append(str(getattr(source, "path", source)))
                super().__init__(source, *a, **kw)

        def counting_open(fs: LocalFileSystem, path: str, *a: Any, **kw: Any) -> Any:
            if "/part-" in str(path) and str(path).endswith(".parquet"):
                opens.shards.append(str(path))
            return real_open(fs, path, *a, **kw)

        monkeypatch.setattr(pq, "ParquetFile", CountingParquetFile)
        monkeypatch.setattr(LocalFileSystem, "_open", counting_open)

    def token_shards(self) -> list[str]:
        """<dataset>/<file> of every token shard opened either way, in order."""
        return ["/".join(Path(p).parts[-2:]) for p in self.parquet + self.shards if "/part-" in p]


# ---- the tokenize job's table ----

@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A real build's sentence shards tokenized by the tokenize job: (build out, tokens root)."""
    tmp = tmp_path_factory.mktemp("tok")
    torch.set_num_threads(1)
    out, _ = build_sentences(tmp)
    torch.manual_seed(0)
    VQGAN(VQGANConfig.tiny()).save_pretrained(tmp / "tokenizer", name="tiny")
    result = tokenize(out, str(tmp / "tokenizer"), use_ray=False, log=lambda _: None)
    assert result.ok and result.ran == 3
    return out, result.root


def test_the_tokenize_job_records_each_shard_as_its_footer_says(tokenized: tuple[str, str]) -> None:
    _, root = tokenized
    table = read_index(root)
    assert table is not None and table.num_rows == 3
    for e in table.to_pylist():
        url = f"{root}/{e['dataset']}/part-{e['unit']}.parquet"
        pf = pq.ParquetFile(url)
        assert e["rows"] == pf.metadata.num_rows > 0
        assert e["row_groups"] == [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        assert e["bytes"] == Path(url).stat().st_size
        meta = read_metadata(pf.schema_arrow)
        assert (e["tokenizer_id"], e["schema_version"], e["sentences"]) == \
               (meta["tokenizer_id"], meta["schema_version"], meta["sentences"])
        t = pf.read(columns=["source", "task"]).to_pylist()
        assert [(g["source"], g["task"]) for g in e["groups"]] == sorted({(r["source"], r["task"]) for r in t})
        assert e["dedup"] == ""  # tokenized under an empty dedup table


def test_the_trainer_opens_no_footer_and_gets_the_reference_batches(tokenized: tuple[str, str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, root = tokenized
    cfg = DataConfig(tokens=[root], seq_len=300, piece_rows=2, open_pieces=2)
    want = reference_index([root], None, 2)
    opens = Opens(monkeypatch)
    got = build_index([root], None, 2)
    assert opens.token_shards() == []
    monkeypatch.undo()
    assert_same_index(got, want)
    assert_same_batches(got, want, cfg)


def test_a_rerun_with_nothing_to_do_leaves_the_table_alone_and_an_old_output_gets_one(
        tokenized: tuple[str, str], tmp_path: Path) -> None:
    out, root = tokenized
    tok_dir = str(Path(root).parents[2] / "tokenizer")
    table = Path(root) / INDEX_TABLE
    before = table.stat().st_mtime_ns
    tokenize(out, tok_dir, use_ray=False, log=lambda _: None)
    assert table.stat().st_mtime_ns == before
    table.unlink()  # as an output of the version before the table
    tokenize(out, tok_dir, use_ray=False, log=lambda _: None)
    assert read_index(root).num_rows == 3


# ---- shards with several row groups, tasks mixed inside row groups, a dedup table ----

@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """Tokens of a build with a dedup table: units 0 and 1 of `video` were tokenized under it (they
    hold no dropped id); unit 2 and the `photos` unit under an older one (both hold dropped ids)."""
    root = tmp_path_factory.mktemp("mixed")
    build, tok = root / "build", root / "build" / "tokens" / "test-tok"
    dropped = ["video-2-3", "video-2-4", "video-2-11", "photos-0-0"]
    (build / "dedup").mkdir(parents=True)
    pq.write_table(pa.table({"kept": ["video-0-0"] * 4, "dropped": dropped, "sha256": ["x"] * 4}, schema=DEDUP_SCHEMA),
                   build / CONTENT_TABLE)
    entries: list[dict] = []
    write_token_shards(tok, "video", units=3, sentences_per_unit=13, tasks=["detection", "pose", "pose"],
                       images=(1, 2), row_group_rows=5, sentences=str(build), entries=entries)
    write_token_shards(tok, "photos", units=1, sentences_per_unit=7, task="image", seed=1, sentences=str(build),
                       entries=entries)
    for e in entries:  # units 0-1 hold no dropped id: as if tokenized under today's table (the job skips them)
        if e["dataset"] == "video" and e["unit"] in ("00000", "00001"):
            e["dedup"] = dedup_key(dropped)
    write_tokens_manifest(tok, entries, sentences_url="")
    return build, tok, entries


@pytest.mark.parametrize("by", [None, "source", "task", "source_task"])
def test_mixed_groups_and_dedup_match_the_reference(mixed: tuple[Path, Path, list[dict]], by: str | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, tok, _ = mixed
    want = reference_index([str(tok)], by, 3)
    assert sum(want.rows.values()) == 2 * 13 + 13 + 7 - 4  # the dropped ids are left out
    opens = Opens(monkeypatch)
    got = build_index([str(tok)], by, 3)
    # only the two shards tokenized under another dedup table pay a (sentence_id) read
    assert sorted(opens.token_shards()) == ["photos/part-00000.parquet", "video/part-00002.parquet"]
    monkeypatch.undo()
    assert_same_index(got, want)
    mixture = MixtureConfig(by=by, default=1.0) if by else None
    assert_same_batches(got, want, DataConfig(tokens=[str(tok)], seq_len=200, piece_rows=3, open_pieces=2,
                                              mixture=mixture))


def test_shards_without_a_usable_row_are_read_from_their_footers(mixed: tuple[Path, Path, list[dict]],
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, tok, _ = mixed
    copy = tmp_path / "build" / "tokens" / "test-tok"
    shutil.copytree(tok.parent.parent, tmp_path / "build")
    table = pq.read_table(copy / INDEX_TABLE)
    rows = {(r["dataset"], r["unit"]): r for r in table.to_pylist()}
    rows[("video", "00001")]["bytes"] += 1  # this row describes another file than the one there now
    del rows[("photos", "00000")]  # and this one is lost
    pq.write_table(pa.Table.from_pylist(list(rows.values()), schema=table.schema), copy / INDEX_TABLE)
    want = reference_index([str(copy)], "task", 3)
    opens = Opens(monkeypatch)
    got = build_index([str(copy)], "task", 3)
    opened = set(opens.token_shards())
    monkeypatch.undo()
    # video 1: its row names another size; photos 0: its row lost; video 2: a dedup read (as above)
    assert opened == {"video/part-00001.parquet", "photos/part-00000.parquet", "video/part-00002.parquet"}
    assert_same_index(got, want)


def test_units_outside_the_builds_plan_are_not_trained_on(mixed: tuple[Path, Path, list[dict]],
                                                         tmp_path: Path) -> None:
    build, tok, entries = mixed
    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    tok_copy = copy / "tokens" / "test-tok"
    # the build's current plan: video 0 and 2 and photos 0; video 1 is a leftover unit
    plan = [("video", "00000"), ("video", "00002"), ("photos", "00000")]

    class U:
        def __init__(self, d: str, u: str) -> None:
            self.dataset, self.unit, self.name = d, u, f"{d}/{u}"

    units = [U(d, u) for d, u in plan]
    for d, u in plan:  # their commit markers: the manifest lists them
        (copy / "sentences" / d).mkdir(parents=True, exist_ok=True)
        (copy / "sentences" / d / f"part-{u}.stats.json").write_text("{}")
    write_manifest(UnitLayout.sentences(str(copy)), {"kind": "sentences"}, units,
                   {u.name: unit_row(u.dataset, u.unit, {"sentences": 1, "shard": {"path": "x", "rows": 1}}, {})
                    for u in units})
    write_tokens_manifest(tok_copy, entries, sentences_url=str(copy))
    shards = [Path(s).relative_to(tok_copy).as_posix() for s in find_token_shards([str(tok_copy)])]
    assert shards == ["photos/part-00000.parquet", "video/part-00000.parquet", "video/part-00002.parquet"]


def test_the_index_travels_as_arrow_and_workers_map_it(mixed: tuple[Path, Path, list[dict]]) -> None:
    _, tok, _ = mixed
    index = build_index([str(tok)], "task", 3)
    again = TokenIndex.from_bytes(index.to_bytes())  # what rank 0 broadcasts
    assert_same_index(again, index)
    plain = len(pickle.dumps(index))
    folder = index.spill()
    small = pickle.dumps(index)  # what a DataLoader worker receives
    assert len(small) < 300 < plain and folder.encode() in small
    assert_same_index(pickle.loads(small), again)


def _shared_index_rank(rank: int, port: int, tokens: str, result: str) -> None:
    import os

    import torch.distributed as dist

    import train.stream as stream

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    built = []
    real = stream.build_index
    stream.build_index = lambda *a, **kw: built.append(1) or real(*a, **kw)  # type: ignore[assignment]
    try:
        index = stream.shared_index(DataConfig(tokens=[tokens], piece_rows=3, mixture=MixtureConfig(by="task",
                                                                                                   default=1.0)),
                                    rank, 2)
        Path(result, f"{rank}.json").write_text(json.dumps(
            {"built": len(built), "fingerprint": index.fingerprint,
             "pieces": {g: _pieces(p) for g, p in index.groups.items()}}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_rank_0_builds_the_index_once_and_shares_it(mixed: tuple[Path, Path, list[dict]], tmp_path: Path) -> None:
    import multiprocessing
    import socket

    _, tok, _ = mixed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_shared_index_rank, args=(r, port, str(tok), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2))
    assert (r0["built"], r1["built"]) == (1, 0)
    want = build_index([str(tok)], "task", 3)
    assert r0["fingerprint"] == r1["fingerprint"] == want.fingerprint
    assert r0["pieces"] == r1["pieces"] == json.loads(json.dumps({g: _pieces(p) for g, p in want.groups.items()}))


def test_inspect_takes_the_units_table_not_a_glob(tokenized: tuple[str, str], tmp_path: Path) -> None:
    from tokenize_job.inspect_tokens import summarise, token_shards

    _, root = tokenized
    copy = tmp_path / "tok"
    shutil.copytree(root, copy)
    first = sorted((copy / "photos").glob("part-*.parquet"))[0]
    shutil.copy(first, copy / "photos" / "part-99999.parquet")  # a leftover outside the plan, with a marker
    shutil.copy(str(first)[: -len(".parquet")] + ".stats.json", copy / "photos" / "part-99999.stats.json")
    assert len(token_shards(str(copy))) == 3
    assert summarise(str(copy)).startswith("token shards: 3 ")
    assert len(token_shards(str(tmp_path))) == 3  # <out>/tokens: each tokenizer folder's table
