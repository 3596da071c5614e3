"""The token index in columns: pieces as arrays, shared between ranks and workers without copies.

A *piece* is at most `piece_rows` sentences of one row group belonging to one mixture group;
pieces are the unit the stream deals out to ranks and DataLoader workers. At 10^6 shards a list
of Piece objects would cost each rank and each DataLoader worker hundreds of MB (and a pickle per
worker); here a group's pieces are four int arrays (+ the explicit row numbers of pieces that are
not a contiguous range), the shard URLs one Arrow string array. `to_bytes` / `from_bytes` move a
whole index between ranks as Arrow IPC; `spill` writes it to files that DataLoader workers
memory-map, so a worker unpickles a folder name, not the index.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

PIECES_SCHEMA = pa.schema([("group", pa.int32()), ("shard", pa.int32()), ("rg", pa.int32()),
                           ("start", pa.int64()), ("stop", pa.int64()), ("explicit", pa.bool_())])


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


class PieceList(Sequence[Piece]):
    """One group's pieces; `start:stop` are rows, or for explicit pieces a slice of `values`."""

    def __init__(self, shard: np.ndarray, rg: np.ndarray, start: np.ndarray, stop: np.ndarray,
                 explicit: np.ndarray, values: np.ndarray) -> None:
        self.shard, self.rg, self.start, self.stop, self.explicit, self.values = shard, rg, start, stop, explicit, values

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        a, b = int(self.start[i]), int(self.stop[i])
        return Piece(int(self.shard[i]), int(self.rg[i]), self.values[a:b] if self.explicit[i] else (a, b))

    def __iter__(self) -> Iterator[Piece]:
        return (self[i] for i in range(len(self)))


class _GroupBuilder:
    def __init__(self) -> None:
        self.cols: tuple[list[int], ...] = ([], [], [], [], [])  # shard, rg, start, stop, explicit


@dataclass
class TokenIndex:
    shards: Sequence[str]
    groups: dict[str, PieceList] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # sentences per group
    fingerprint: str = ""
    _values: list[np.ndarray] = field(default_factory=list, repr=False)  # explicit rows while building
    _building: dict[str, _GroupBuilder] = field(default_factory=dict, repr=False)
    _n_values: int = field(default=0, repr=False)
    _spilled: str | None = field(default=None, repr=False)

    # ---- building ----

    def add(self, group: str, shard: int, rg: int, rows: np.ndarray | None, n: int, piece_rows: int) -> None:
        """Row group `rg` of shard `shard` (n rows; or just `rows`) into pieces of group `group`."""
        b = self._building.setdefault(group, _GroupBuilder())
        if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            n, start, rows = len(rows), int(rows[0]), None  # contiguous: keep only the range
        else:
            start = 0
        total = n if rows is None else len(rows)
        base = start if rows is None else self._n_values  # explicit: positions in the shared values
        for lo in range(0, total, piece_rows):
            b.cols[0].append(shard)
            b.cols[1].append(rg)
            b.cols[2].append(base + lo)
            b.cols[3].append(base + min(total, lo + piece_rows))
            b.cols[4].append(rows is not None)
        if rows is not None and total:
            self._values.append(np.asarray(rows, np.int64))
            self._n_values += total
        self.rows[group] = self.rows.get(group, 0) + total

    def finish(self) -> "TokenIndex":
        """Arrays from what `add` collected."""
        values = np.concatenate(self._values) if self._values else np.empty(0, np.int64)
        for g, b in self._building.items():
            shard, rg, start, stop, explicit = (np.asarray(c, np.int64) for c in b.cols)
            self.groups[g] = PieceList(shard.astype(np.int32), rg.astype(np.int32), start, stop,
                                       explicit.astype(bool), values)
        self._building, self._values, self._n_values = {}, [], 0
        return self

    # ---- moving it ----

    def _tables(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        names = list(self.groups)
        cols: list[list[np.ndarray]] = [[] for _ in range(6)]
        values: np.ndarray = np.empty(0, np.int64)
        for gi, g in enumerate(names):
            p = self.groups[g]
            values = p.values if len(p.values) > len(values) else values  # one shared array
            for c, arr in zip(cols, (np.full(len(p), gi, np.int32), p.shard, p.rg, p.start, p.stop, p.explicit)):
                c.append(np.asarray(arr))
        pieces = pa.Table.from_arrays([pa.array(np.concatenate(c) if c else np.empty(0), type=f.type)
                                       for c, f in zip(cols, PIECES_SCHEMA)], schema=PIECES_SCHEMA)
        meta = {"groups": names, "rows": self.rows, "fingerprint": self.fingerprint}
        pieces = pieces.replace_schema_metadata({b"index": json.dumps(meta).encode()})
        shards = self.shards.array if isinstance(self.shards, ShardList) else pa.array(list(self.shards), pa.string())
        return pieces, pa.table({"values": pa.array(values, pa.int64())}), pa.table({"url": shards})

    def to_bytes(self) -> list[bytes]:
        return [_ipc(t) for t in self._tables()]

    @classmethod
    def from_bytes(cls, parts: list[bytes]) -> "TokenIndex":
        return cls._from_tables(*(pa.ipc.open_file(pa.py_buffer(b)).read_all() for b in parts))

    @classmethod
    def _from_tables(cls, pieces: pa.Table, values: pa.Table, shards: pa.Table) -> "TokenIndex":
        meta = json.loads(pieces.schema.metadata[b"index"])
        vals = _np(values.column("values"))
        cols = [_np(pieces.column(f.name)) for f in PIECES_SCHEMA]
        groups: dict[str, PieceList] = {}
        order = np.argsort(cols[0], kind="stable") if len(cols[0]) else np.empty(0, np.int64)
        bounds = np.searchsorted(cols[0][order], np.arange(len(meta["groups"]) + 1)) if len(order) else None
        for gi, g in enumerate(meta["groups"]):
            sel = order[bounds[gi]:bounds[gi + 1]] if bounds is not None else np.empty(0, np.int64)
            contiguous = len(sel) == 0 or (sel[-1] - sel[0] + 1 == len(sel) and bool(np.all(np.diff(sel) == 1)))
            take = (lambda a: a[sel[0]:sel[-1] + 1]) if contiguous and len(sel) else (lambda a: a[sel])
            groups[g] = PieceList(*(take(c) for c in cols[1:5]), take(cols[5]).astype(bool), vals)
        return cls(ShardList(shards.column("url").combine_chunks()), groups, dict(meta["rows"]), meta["fingerprint"])

    def spill(self) -> str:
        """Write the index to a private temp folder and reopen it memory-mapped: pickling it then
        carries the folder's name only (DataLoader workers map the same pages)."""
        if self._spilled:
            return self._spilled
        folder = tempfile.mkdtemp(prefix="uvd-token-index-")
        for name, table in zip(("pieces", "values", "shards"), self._tables()):
            with pa.OSFile(os.path.join(folder, f"{name}.arrow"), "wb") as f:
                with pa.ipc.new_file(f, table.schema) as w:
                    w.write_table(table)
        mapped = _mapped(folder)
        self.shards, self.groups = mapped.shards, mapped.groups
        self._spilled = folder
        weakref.finalize(self, shutil.rmtree, folder, True)  # the process that wrote it removes it
        return folder

    def __getstate__(self) -> dict[str, Any]:
        if self._spilled:
            return {"spilled": self._spilled}
        return {"parts": self.to_bytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = _mapped(state["spilled"]) if "spilled" in state else TokenIndex.from_bytes(state["parts"])
        self.__dict__.update(other.__dict__)
        self._spilled = None  # a worker's copy: the folder belongs to the rank that wrote it


class ShardList(Sequence[str]):
    """Shard URLs as one Arrow string array (a Python list of 10^6 URLs is ~100 MB per process)."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.array[i].as_py()

    def __iter__(self) -> Iterator[str]:
        return iter(self.array.to_pylist())


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _np(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return arr.to_numpy(zero_copy_only=False)


def _mapped(folder: str) -> TokenIndex:
    tables = [pa.ipc.open_file(pa.memory_map(os.path.join(folder, f"{n}.arrow"), "r")).read_all()
              for n in ("pieces", "values", "shards")]
    return TokenIndex._from_tables(*tables)
