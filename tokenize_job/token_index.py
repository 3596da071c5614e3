"""`<tokens root>/manifest/index.parquet`: what a reader of token shards needs per shard, written once.

One row per committed token shard: its size, rows, the rows of each row group, schema version,
tokenizer id, the sentence shard it came from, the dedup table it was tokenized under, and per
row group which rows belong to which (source, task). The tokenize job fills a row from what its
writer saw (no read of the shard); the trainer (train/shards_index.py) builds its whole index from
this table plus one listing, so it never opens a shard footer. A shard without a row (written by an
older version) is described from its footer instead (`entry_from_footer`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uvd.schema import read_metadata
from uvd.shards import ShardWriter, open_parquet
from uvd.storage import atomic_open, fs_and_path, join

INDEX_TABLE = "manifest/index.parquet"
INDEX_VERSION = "1"
GROUP = pa.struct([("rg", pa.int32()), ("source", pa.string()), ("task", pa.string()),
                   ("rows", pa.list_(pa.int32()))])  # rows: null = every row of the row group
INDEX_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("unit", pa.string()), ("bytes", pa.int64()), ("rows", pa.int64()),
    ("schema_version", pa.string()), ("tokenizer_id", pa.string()), ("sentences", pa.string()),
    ("dedup", pa.string()),  # dedup_key of the dropped ids skipped when tokenizing; null: unknown
    ("row_groups", pa.list_(pa.int64())), ("groups", pa.list_(GROUP)),
], metadata={b"uvd.index_version": INDEX_VERSION.encode()})


def index_url(root: str) -> str:
    return join(root.rstrip("/"), INDEX_TABLE)


def dedup_key(dropped: Iterable[str]) -> str:
    """Names a set of dropped sentence ids: a shard tokenized under the same set holds none of them."""
    ids = sorted(dropped)
    if not ids:
        return ""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


def _groups(rgs: list[tuple[int, list[str], list[str]]]) -> list[dict[str, Any]]:
    """Per row group (number, sources, tasks of its rows): the rows of each (source, task), in
    first-seen order; null rows when one pair covers the whole row group (the usual case)."""
    out = []
    for rg, sources, tasks in rgs:
        pairs: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(zip(sources, tasks)):
            pairs.setdefault(key, []).append(i)
        whole = len(pairs) == 1
        for (source, task), rows in pairs.items():
            out.append({"rg": rg, "source": source, "task": task, "rows": None if whole else rows})
    return out


class IndexingShardWriter(ShardWriter):
    """A ShardWriter that notes each row group's rows and their (source, task) as it writes them,
    so that the index row costs no read of the shard. `entry` is filled in by close()."""

    def __init__(self, url: str, schema: pa.Schema, kind: str, meta: dict[str, Any], row_group_bytes: int,
                 dataset: str, unit: str, dedup: str | None) -> None:
        super().__init__(url, schema, kind, meta, row_group_bytes)
        self.row_groups: list[tuple[int, list[str], list[str]]] = []
        self.entry: dict[str, Any] = {}
        self._key = (dataset, unit, str(meta.get("sentences", "")), dedup)

    def close(self) -> Any:
        info = super().close()
        dataset, unit, sentences, dedup = self._key
        self.entry.update(self.index_entry(dataset, unit, info.bytes, sentences, dedup))
        return info

    def _flush(self) -> None:
        if self._pending:
            self.row_groups.append((len(self.row_groups), [r["source"] for r in self._pending],
                                    [r["task"] for r in self._pending]))
        super()._flush()

    def index_entry(self, dataset: str, unit: str, nbytes: int, sentences: str, dedup: str) -> dict[str, Any]:
        meta = read_metadata(self.schema)
        return {"dataset": dataset, "unit": unit, "bytes": nbytes, "rows": self.rows,
                "schema_version": meta.get("schema_version"), "tokenizer_id": meta.get("tokenizer_id"),
                "sentences": sentences, "dedup": dedup,
                "row_groups": [len(s) for _, s, _ in self.row_groups], "groups": _groups(self.row_groups)}


def entry_from_footer(url: str, dataset: str = "", unit: str = "") -> dict[str, Any]:
    """The index row of a shard without one, from its footer (and its source/task columns when a
    row group holds more than one pair). Raises ValueError for a file that is no token shard."""
    with open_parquet(url) as pf:
        if "tokens" not in pf.schema_arrow.names:
            raise ValueError(f"{url}: not a token shard (no `tokens` column)")
        meta = read_metadata(pf.schema_arrow)
        rgs = []
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg, columns=["source", "task"], use_threads=False)
            rgs.append((rg, _strings(t.column("source")), _strings(t.column("task"))))
        fs, path = fs_and_path(url)
        size = pf.metadata.serialized_size  # replaced below by the file's size when known
        try:
            size = int(fs.size(path))
        except Exception:  # noqa: BLE001 - a size is a check, not a need
            pass
        return {"dataset": dataset, "unit": unit, "bytes": size, "rows": pf.metadata.num_rows,
                "schema_version": meta.get("schema_version"), "tokenizer_id": meta.get("tokenizer_id"),
                "sentences": meta.get("sentences", ""), "dedup": None,
                "row_groups": [pf.metadata.row_group(rg).num_rows for rg in range(pf.num_row_groups)],
                "groups": _groups(rgs)}


def _strings(col: pa.ChunkedArray) -> list[str]:
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary.take(arr.indices)
    return arr.to_pylist()


def write_index(root: str, entries: list[dict[str, Any]]) -> str:
    """The index table under `root`, one row per entry, sorted by (dataset, unit); returns its URL."""
    entries = sorted(entries, key=lambda e: (e["dataset"], e["unit"]))
    table = pa.Table.from_pylist(entries, schema=INDEX_SCHEMA)
    url = index_url(root)
    with atomic_open(url) as f:
        pq.write_table(table, f, compression="zstd")
    return url


def read_index(root: str) -> pa.Table | None:
    """The index table under `root`; None when there is none, or it is unreadable or of another version."""
    fs, path = fs_and_path(index_url(root))
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    if (table.schema.metadata or {}).get(b"uvd.index_version") != INDEX_VERSION.encode():
        return None
    if not table.schema.remove_metadata().equals(INDEX_SCHEMA.remove_metadata()):
        return None
    return table


def rows_by_group(entry: dict[str, Any], by: str | None) -> dict[int, list[tuple[str, np.ndarray | None]]]:
    """Row group → [(mixture group, its sorted row numbers, or None for all rows)] of an index row,
    grouped `by` source, task, source_task; {} for None (every row in one group)."""
    if by is None:
        return {}
    merged: dict[int, dict[str, list[Any]]] = {}
    for g in entry["groups"]:
        name = g["source"] if by == "source" else g["task"] if by == "task" else f"{g['source']}/{g['task']}"
        merged.setdefault(g["rg"], {}).setdefault(name, []).append(g["rows"])
    out: dict[int, list[tuple[str, np.ndarray | None]]] = {}
    for rg, names in merged.items():
        out[rg] = [(name, None if any(p is None for p in parts)
                    else np.sort(np.concatenate([np.asarray(p, np.int64) for p in parts]))) for name, parts in names.items()]
    return out
