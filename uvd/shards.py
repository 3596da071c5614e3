"""Reading and writing Parquet shards (sentences, tokens, audit) through fsspec, atomically."""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from uvd import codec
from uvd.records import VisualSentence
from uvd.schema import SENTENCE_SCHEMA, read_metadata, with_metadata
from uvd.storage import atomic_open, fs_and_path


class _HashingFile:
    """Passes writes through while hashing them, so a shard's sha256 costs no second read."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.size, self.closed = f, hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.closed = True


@dataclass
class ShardInfo:
    rows: int
    bytes: int
    sha256: str


class ShardWriter:
    """Streams rows into one Parquet file, flushing a row group every `row_group_bytes`.

    The file is visible under its name only after `close()` succeeded (see storage.atomic_open).
    """

    def __init__(self, url: str, schema: pa.Schema, kind: str, meta: dict[str, Any] | None = None,
                 row_group_bytes: int = 32 << 20) -> None:
        self.schema = with_metadata(schema, kind, meta)
        self.row_group_bytes = row_group_bytes
        self._ctx = atomic_open(url)
        self._file = _HashingFile(self._ctx.__enter__())
        self._writer = pq.ParquetWriter(self._file, self.schema, compression="zstd",
                                        write_statistics=["sentence_id", "num_images"] if "sentence_id" in schema.names else True)
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self.rows = 0

    def add(self, row: dict[str, Any], nbytes: int = 0) -> None:
        self._pending.append(row)
        self._pending_bytes += nbytes
        if self._pending_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_pylist(self._pending, schema=self.schema)
            self._writer.write_table(table, row_group_size=len(self._pending))
            self.rows += len(self._pending)
            self._pending, self._pending_bytes = [], 0

    def close(self) -> ShardInfo:
        self._flush()
        self._writer.close()
        self._ctx.__exit__(None, None, None)
        return ShardInfo(self.rows, self._file.size, self._file.sha.hexdigest())

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def sentence_row(s: VisualSentence, jpeg_quality: int) -> tuple[dict[str, Any], int]:
    flags = s.lossless or [False] * len(s.images)
    images = [codec.encode(img, lossless, jpeg_quality) for img, lossless in zip(s.images, flags)]
    row = {
        "sentence_id": s.sentence_id,
        "source": s.source,
        "task": s.task,
        "layout": s.layout,
        "num_images": len(images),
        "images": images,
        "meta": json.dumps(s.meta, sort_keys=True, default=str),
    }
    return row, sum(map(len, images))


def sentence_writer(url: str, meta: dict[str, Any] | None = None, row_group_bytes: int = 32 << 20) -> ShardWriter:
    return ShardWriter(url, SENTENCE_SCHEMA, "sentences", meta, row_group_bytes)


def open_parquet(url: str) -> pq.ParquetFile:
    """A Parquet file, read natively when local and through fsspec otherwise.

    Arrow's reader threads must not hold buffers of a Python file object: released at
    interpreter exit they need the GIL and abort the process. So a Python file is read
    without Arrow's pre-buffering threads.
    """
    fs, path = fs_and_path(url)
    if "://" not in url or url.startswith("file://"):
        return pq.ParquetFile(path)
    return pq.ParquetFile(fs.open(path, "rb"), pre_buffer=False)


def shard_metadata(url: str) -> dict[str, str]:
    return read_metadata(open_parquet(url).schema_arrow)


def iter_rows(url: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a shard as dicts, one row group at a time (memory bounded by the row group)."""
    pf = open_parquet(url)
    for i in range(pf.num_row_groups):
        yield from pf.read_row_group(i, columns=columns, use_threads=False).to_pylist()


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    return open_parquet(url).read(columns=columns, use_threads=False)
