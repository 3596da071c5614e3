"""Which token shards exist (committed ones only) and how their rows split into pieces per group.

A *piece* is at most `piece_rows` sentences of one row group belonging to one mixture group;
pieces are the unit the stream deals out to ranks and DataLoader workers.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uvd import storage
from uvd.dedup import build_root, dropped_ids
from uvd.layout import relative, stats_file
from uvd.manifest import read_manifest, read_units
from uvd.schema import read_metadata
from uvd.shards import open_parquet
from uvd.storage import fs_and_path


@dataclass(frozen=True)
class Piece:
    shard: int  # index into TokenIndex.shards
    row_group: int
    rows: tuple[int, int] | np.ndarray  # a contiguous [start, stop) or explicit row numbers

    def __len__(self) -> int:
        if isinstance(self.rows, tuple):
            return self.rows[1] - self.rows[0]
        return len(self.rows)

    def row_numbers(self) -> np.ndarray:
        if isinstance(self.rows, tuple):
            return np.arange(self.rows[0], self.rows[1], dtype=np.int64)
        return self.rows


@dataclass
class TokenIndex:
    shards: list[str]
    groups: dict[str, list[Piece]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # sentences per group
    fingerprint: str = ""


def find_token_shards(roots: list[str]) -> list[str]:
    """Committed token shards (a `.stats.json` beside them) under each root, sorted.

    A root may be a tokenizer folder (<out>/tokens/<id>), a build output (<out>, holding exactly
    one tokenizer's tokens), one source folder, or a single .parquet file. A tokenizer folder's
    manifest (manifest/units.parquet) lists its shards; without one, committed parts are found by glob. All roots
    must come from one tokenizer: codes of two tokenizers mean different things.
    """
    found: set[str] = set()
    tokenizers: dict[str, str] = {}
    for root in roots:
        if root.endswith(".parquet"):
            candidates = [root]
        else:
            root = _tokenizer_folder(root)
            candidates, tokenizer = _listed_shards(root)
            if tokenizer:
                tokenizers[root] = tokenizer
        committed = _with_stats(root, candidates)
        if not committed:
            raise FileNotFoundError(f"no committed token shards (part-*.parquet with .stats.json) under {root}")
        found.update(committed)
    if len(set(tokenizers.values())) > 1:
        raise ValueError(f"token folders come from different tokenizers: {tokenizers}")
    return sorted(found)


def _with_stats(root: str, candidates: list[str]) -> list[str]:
    """The candidates whose stats file (commit marker) exists: one listing of the root, not a probe each."""
    listed = set(storage.list_names(root)) if not root.endswith(".parquet") else set()
    found = []
    for c in candidates:
        rel = relative(root, stats_file(c))
        if rel in listed or (rel == stats_file(c) and storage.exists(stats_file(c))):
            found.append(c)
    return found


def _tokenizer_folder(root: str) -> str:
    if not storage.exists(storage.join(root, "tokens")):
        return root
    fs, _ = fs_and_path(root)
    folders = [p for p in storage.glob(root, "tokens/*") if fs.isdir(p)]
    if len(folders) != 1:
        names = [posixpath.basename(p) for p in folders]
        raise ValueError(f"{root}/tokens holds {len(folders)} tokenizers' tokens {names}: name one folder in data.tokens")
    return folders[0]


def _listed_shards(root: str) -> tuple[list[str], str | None]:
    """(shard URLs, tokenizer id) from the folder's manifest (manifest/units.parquet), else by glob."""
    man = read_manifest(root)
    if man and man.get("kind") == "tokens":
        # Listed by unit; a copied folder keeps the layout, so paths are resolved under this root.
        shards = [storage.join(root, r["dataset"], f"part-{r['unit']}.parquet")
                  for r in read_units(root) if r["status"] == "done"]
        return shards, (man.get("tokenizer") or {}).get("tokenizer_id")
    return storage.glob(root, "*/part-*.parquet") + storage.glob(root, "part-*.parquet"), None


def _group_keys(table: pa.Table, by: str | None) -> tuple[list[str], np.ndarray]:
    """The distinct group names of a row group and each row's code into them."""
    if by is None:
        return ["all"], np.zeros(table.num_rows, np.int64)
    cols = ["source", "task"] if by == "source_task" else [by]
    names: list[list[str]] = []
    codes: list[np.ndarray] = []
    for c in cols:
        arr = table.column(c).combine_chunks()
        if not pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_encode()
        names.append(arr.dictionary.to_pylist())
        codes.append(arr.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    if len(cols) == 1:
        return names[0], codes[0]
    width = len(names[1])
    combined = codes[0] * width + codes[1]
    keys = [f"{a}/{b}" for a in names[0] for b in names[1]]
    return keys, combined


def build_index(roots: list[str], by: str | None, piece_rows: int) -> TokenIndex:
    shards = find_token_shards(roots)
    index = TokenIndex(shards)
    h = hashlib.sha256()
    for si, url in enumerate(shards):
        with open_parquet(url) as pf:
            if "tokens" not in pf.schema_arrow.names:
                raise ValueError(f"{url}: not a token shard (no `tokens` column)")
            skip = dropped_ids(build_root(read_metadata(pf.schema_arrow).get("sentences", "")))
            for rg in range(pf.num_row_groups):
                n = pf.metadata.row_group(rg).num_rows
                h.update(json.dumps([url, rg, n]).encode())
                kept = _not_dropped(pf, rg, skip)  # content duplicates in <build>/dedup are never streamed
                if kept is not None:
                    h.update(json.dumps(kept.tolist()).encode())
                if by is None:
                    _add(index, "all", si, rg, kept, n, piece_rows)
                    continue
                names, codes = _group_keys(pf.read_row_group(rg, columns=["source", "task"], use_threads=False), by)
                for code in np.unique(codes):
                    rows = np.flatnonzero(codes == code)
                    _add(index, names[int(code)], si, rg, rows if kept is None else np.intersect1d(rows, kept), n,
                         piece_rows)
    index.fingerprint = h.hexdigest()[:16]
    return index


def _not_dropped(pf: pq.ParquetFile, rg: int, skip: set[str]) -> np.ndarray | None:
    """Row numbers of row group `rg` whose sentence is not dropped; None when none is."""
    if not skip:
        return None
    ids = pf.read_row_group(rg, columns=["sentence_id"], use_threads=False).column("sentence_id").to_pylist()
    if not skip.intersection(ids):
        return None
    return np.array([i for i, sid in enumerate(ids) if sid not in skip], dtype=np.int64)


def _add(index: TokenIndex, group: str, shard: int, rg: int, rows: np.ndarray | None, n: int, piece_rows: int) -> None:
    pieces = index.groups.setdefault(group, [])
    if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        n, start, rows = len(rows), int(rows[0]), None  # contiguous: keep only the range
    else:
        start = 0
    total = n if rows is None else len(rows)
    for lo in range(0, total, piece_rows):
        hi = min(total, lo + piece_rows)
        span = (start + lo, start + hi) if rows is None else rows[lo:hi].copy()
        pieces.append(Piece(shard, rg, span))
    index.rows[group] = index.rows.get(group, 0) + total
