"""LAION metadata (Parquet, CSV/TSV, JSONL) read as row ranges, with the column spellings found in the wild.

Only the columns the downloader and the filters need are read: the caption never is, so
it can never reach a shard. Planning counts rows from Parquet footers or by streaming the
file once, never by loading it.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from uvd.errors import ConfigError
from uvd.storage import fs_and_path

# Canonical name → spellings seen in LAION releases and their derivatives (matched case-insensitively).
ALIASES: dict[str, tuple[str, ...]] = {
    "url": ("url", "image_url", "img_url", "link"),
    "width": ("width", "image_width", "w"),
    "height": ("height", "image_height", "h"),
    "punsafe": ("punsafe", "prob_unsafe", "nsfw_prob"),
    "pwatermark": ("pwatermark", "prob_watermark", "watermark"),
    "similarity": ("similarity", "clip_similarity", "clip_sim"),
    # LAION's own id. img2dataset's `key` is its output position, not a metadata id, so it is
    # only used when named explicitly (`id_column: key`).
    "hash": ("hash", "sample_id", "uid"),
}
NUMERIC = ("width", "height", "punsafe", "pwatermark", "similarity")
FORMATS = ("parquet", "csv", "tsv", "jsonl")


def detect_format(path: str) -> str:
    name = path.lower()
    for comp in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ConfigError(f"laion: cannot tell the metadata format of {path} (give `format:`)")


def resolve_columns(names: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Canonical name → the file's column name, for the columns present; the URL column is required."""
    found = match_columns(names, overrides)
    if "url" not in found:
        raise ConfigError(f"laion: no URL column among {names} (set `columns: {{url: ...}}`)")
    return found


def match_columns(names: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Canonical name → the file's column name, for the columns present."""
    lower = {n.lower(): n for n in names}
    found: dict[str, str] = {}
    for canon, spellings in ALIASES.items():
        for s in spellings:
            if s in lower:
                found[canon] = lower[s]
                break
    for canon, col in (overrides or {}).items():
        if canon not in ALIASES:
            raise ConfigError(f"laion: unknown column role {canon!r} (known: {', '.join(ALIASES)})")
        if col not in names:
            raise ConfigError(f"laion: column {col!r} (for {canon}) not in metadata columns {names}")
        found[canon] = col
    return found


def number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _hash_text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, float):  # an int64 hash that went through pandas/NaN handling
        return None if math.isnan(v) else (str(int(v)) if v.is_integer() else repr(v))
    return str(v)


def canonical_row(raw: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """A raw metadata record → {url, width, height, punsafe, pwatermark, similarity, hash} (None when absent)."""
    row: dict[str, Any] = {k: None for k in ALIASES}
    for canon, col in columns.items():
        v = raw.get(col)
        if canon == "url":
            row["url"] = v.strip() if isinstance(v, str) and v.strip() else None
        elif canon == "hash":
            row["hash"] = _hash_text(v)
        elif canon in NUMERIC:
            row[canon] = number(v)
    return row


@dataclass(frozen=True)
class MetadataFile:
    path: str
    format: str
    overrides: dict[str, str] | None = None

    def _open(self, mode: str = "rb") -> Any:
        fs, p = fs_and_path(self.path)
        return fs.open(p, mode, compression="infer" if self.format != "parquet" else None)

    @property
    def _compressed(self) -> bool:
        return self.path.lower().endswith((".gz", ".bz2", ".xz", ".zst"))

    # ---- column names ----
    def column_names(self) -> list[str]:
        if self.format == "parquet":
            with self._open() as f:
                return list(pq.ParquetFile(f).schema_arrow.names)
        if self.format in ("csv", "tsv"):
            with self._open() as f:
                reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 16),
                                        parse_options=self._csv_parse())
                return list(reader.schema.names)
        with self._open() as f:
            for line in f:
                if line.strip():
                    return list(json.loads(line))
        return []

    def columns(self) -> dict[str, str]:
        return resolve_columns(self.column_names(), self.overrides)

    def _csv_parse(self) -> pacsv.ParseOptions:
        # Captions hold quoted newlines in the wild; pyarrow handles them when told to.
        return pacsv.ParseOptions(delimiter="\t" if self.format == "tsv" else ",", newlines_in_values=True)

    def _csv_reader(self, f: Any, columns: list[str]) -> pacsv.CSVStreamingReader:
        # Everything as text: type inference per block breaks when a column turns from int to float.
        return pacsv.open_csv(
            f, parse_options=self._csv_parse(), read_options=pacsv.ReadOptions(block_size=4 << 20),
            convert_options=pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                                 strings_can_be_null=True))

    # ---- planning ----
    def plan(self, rows_per_unit: int) -> list[dict[str, Any]]:
        """Row ranges [start, stop) of at most rows_per_unit rows (JSONL ranges also carry a byte offset)."""
        if self.format == "jsonl":
            return self._plan_jsonl(rows_per_unit)
        n = self.count_rows()
        return [{"start": s, "stop": min(s + rows_per_unit, n)} for s in range(0, n, rows_per_unit)]

    def count_rows(self) -> int:
        if self.format == "parquet":
            with self._open() as f:
                return pq.ParquetFile(f).metadata.num_rows  # from the footer: no data read
        if self.format in ("csv", "tsv"):
            col = self.columns()["url"]
            with self._open() as f:
                return sum(b.num_rows for b in self._csv_reader(f, [col]))
        return sum(1 for _ in self._jsonl_lines(0))

    def _jsonl_lines(self, offset: int) -> Iterator[tuple[int, bytes]]:
        """(byte offset, line) of non-blank lines from `offset` (offset only meaningful uncompressed)."""
        with self._open() as f:
            if offset:
                f.seek(offset)
            pos = offset
            for line in f:
                if line.strip():
                    yield pos, line
                pos += len(line)

    def _plan_jsonl(self, rows_per_unit: int) -> list[dict[str, Any]]:
        units: list[dict[str, Any]] = []
        n = 0
        for pos, _ in self._jsonl_lines(0):
            if n % rows_per_unit == 0:
                units.append({"start": n, "stop": n, "offset": 0 if self._compressed else pos})
            n += 1
            units[-1]["stop"] = n
        return units

    # ---- reading ----
    def rows(self, start: int, stop: int, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row index in the file, canonical row) for rows start ≤ i < stop."""
        cols = self.columns()
        if self.format == "parquet":
            yield from self._parquet_rows(cols, start, stop)
        elif self.format in ("csv", "tsv"):
            yield from self._csv_rows(cols, start, stop)
        else:
            yield from self._jsonl_rows(cols, start, stop, offset)

    def _parquet_rows(self, cols: dict[str, str], start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
        with self._open() as f:
            pf = pq.ParquetFile(f)
            first = 0
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                lo, hi = max(start, first), min(stop, first + n)
                if lo < hi:  # only the row groups that overlap the range are read
                    table = pf.read_row_group(g, columns=sorted(set(cols.values())))
                    for i, raw in enumerate(table.slice(lo - first, hi - lo).to_pylist()):
                        yield lo + i, canonical_row(raw, cols)
                first += n
                if first >= stop:
                    break

    def _csv_rows(self, cols: dict[str, str], start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
        with self._open() as f:
            first = 0
            for batch in self._csv_reader(f, sorted(set(cols.values()))):
                n = batch.num_rows
                lo, hi = max(start, first), min(stop, first + n)
                if lo < hi:
                    for i, raw in enumerate(batch.slice(lo - first, hi - lo).to_pylist()):
                        yield lo + i, canonical_row(raw, cols)
                first += n
                if first >= stop:
                    break

    def _jsonl_rows(self, cols: dict[str, str], start: int, stop: int, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
        i = start if offset else 0
        for _, line in self._jsonl_lines(offset):
            if i >= stop:
                break
            if i >= start:
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError:
                    raw = {}  # a broken line becomes a row without URL: it fails as such in the audit
                yield i, canonical_row(raw if isinstance(raw, dict) else {}, cols)
            i += 1


def url_id(url: str) -> str:
    """The id both the downloader and img2dataset output readers derive for one URL."""
    return "url-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:20]


def derive_id(row: dict[str, Any], id_from: str) -> str | None:
    if id_from in ("auto", "hash") and row.get("hash"):
        return f"hash-{row['hash']}"
    if id_from == "hash":
        return None
    return url_id(row["url"]) if row.get("url") else None


def metadata_file(options: Any, path: str, fmt: str | None = None) -> MetadataFile:
    """One metadata file read as `options` (a LaionOptions: format, column spellings) say."""
    fmt = fmt or (options.format if options.format != "auto" else detect_format(path))
    assert fmt in FORMATS
    return MetadataFile(path, fmt, dict(options.columns) or None)
