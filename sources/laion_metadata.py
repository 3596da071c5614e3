"""LAION metadata (Parquet, CSV/TSV, JSONL) read as row ranges, with the column spellings found in the wild.

Only the columns the downloader and the filters need are read: the caption never is, so
it can never reach a shard. Planning counts rows from Parquet footers or by streaming the
file once, never by loading it.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sources.remote import check_regular
from uvd.errors import ConfigError
from uvd.shards import open_parquet
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
# One JSONL line longer than this is that row's failure, never read whole.
MAX_LINE_BYTES = 16 << 20
# A CSV quote that never closes swallows the rest of the file into one bad record; its lines are
# parsed again, up to this many nested times (then each line left is a row failure of its own).
MAX_REPARSE = 16


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


def problem_row(reason: str) -> dict[str, Any]:
    """A record that cannot be read as a row: it keeps its place (and its audit row) with `reason`."""
    row: dict[str, Any] = {k: None for k in ALIASES}
    row["problem"] = reason
    return row


def _text_values(raw: dict[str, Any]) -> dict[str, Any] | str:
    """CSV cells read as bytes → str, or why not (a cell that is not UTF-8)."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                return f"metadata: column {k!r} is not UTF-8"
        out[k] = v
    return out


@dataclass(frozen=True)
class MetadataFile:
    path: str
    format: str
    overrides: dict[str, str] | None = None

    def _open(self, mode: str = "rb") -> Any:
        check_regular(self.path)  # a FIFO named like metadata would block the plan
        fs, p = fs_and_path(self.path)
        return fs.open(p, mode, compression="infer" if self.format != "parquet" else None)

    @property
    def _compressed(self) -> bool:
        return self.path.lower().endswith((".gz", ".bz2", ".xz", ".zst"))

    def _parquet(self) -> pq.ParquetFile:
        # By path (pyarrow's own file) when local: a Python file object under Arrow's threads can
        # abort the process at exit (uvd/shards.py).
        check_regular(self.path)
        return open_parquet(self.path)

    # ---- column names ----
    def column_names(self) -> list[str]:
        if self.format == "parquet":
            return list(self._parquet().schema_arrow.names)
        if self.format in ("csv", "tsv"):
            with self._open() as f:
                reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 16),
                                        parse_options=self._csv_parse(lambda _: "skip"))
                return list(reader.schema.names)
        # The first line that is a JSON object names the columns; lines that are not fail as rows.
        for _, line in self._jsonl_lines(0):
            raw, _ = _json_line(line)
            if isinstance(raw, dict):
                return list(raw)
        raise ConfigError(f"laion: {self.path}: no line is a JSON object")

    def columns(self) -> dict[str, str]:
        return resolve_columns(self.column_names(), self.overrides)

    def _csv_parse(self, on_invalid: Any = None) -> pacsv.ParseOptions:
        # Captions hold quoted newlines in the wild; pyarrow handles them when told to.
        return pacsv.ParseOptions(delimiter="\t" if self.format == "tsv" else ",", newlines_in_values=True,
                                  invalid_row_handler=on_invalid)

    def _csv_records(self, columns: list[str]) -> Iterator[dict[str, Any]]:
        """Every record of the file in order, as a canonical row or a problem row: a ragged or
        NUL line, a cell that is not UTF-8, a quote that never closes (its lines are read again)
        each keep their place, so row numbers and audit rows do not depend on them."""
        header = self.column_names()
        cols = resolve_columns(header, self.overrides)
        with self._open() as f:
            yield from self._csv_stream(f, columns, cols, header, 0)

    def _csv_stream(self, f: Any, columns: list[str], cols: dict[str, str], names: list[str],
                    depth: int) -> Iterator[dict[str, Any]]:
        """Records of `f`; at depth 0 it starts with the header line, deeper (a part of the file
        read again) it has none."""
        invalid: dict[int, str] = {}

        def on_invalid(row: Any) -> str:
            invalid[row.number if row.number is not None else -1 - len(invalid)] = row.text
            return "skip"

        # Everything as bytes: type inference per block breaks when a column turns from int to
        # float, and a cell that is not UTF-8 must fail its row, not the file.
        reader = pacsv.open_csv(
            f, parse_options=self._csv_parse(on_invalid),
            read_options=pacsv.ReadOptions(block_size=4 << 20, use_threads=False,
                                           column_names=names if depth else None),
            convert_options=pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.binary() for c in columns},
                                                 strings_can_be_null=True))
        number = 2 if depth == 0 else 1  # pyarrow numbers records from 1, a header line included
        for batch in reader:
            for raw in batch.to_pylist():
                while number in invalid:  # a skipped record is reported before its block's batch
                    yield from self._bad_record(invalid.pop(number), columns, cols, names, depth)
                    number += 1
                values = _text_values(raw)
                yield problem_row(values) if isinstance(values, str) else canonical_row(values, cols)
                number += 1
        for n in sorted(invalid):
            yield from self._bad_record(invalid[n], columns, cols, names, depth)

    def _bad_record(self, text: str, columns: list[str], cols: dict[str, str], names: list[str],
                    depth: int) -> Iterator[dict[str, Any]]:
        lines = text.split("\n")
        if len(lines) == 1 or depth >= MAX_REPARSE:
            for line in lines:
                yield problem_row("metadata: malformed CSV row (wrong number of fields)"
                                  if line.strip("\x00 \r") else "metadata: blank or NUL-only CSV row")
            return
        yield problem_row("metadata: CSV row opens a quote that it never closes")
        rest = "\n".join(lines[1:]).encode("utf-8", "replace")
        yield from self._csv_stream(io.BytesIO(rest), columns, cols, names, depth + 1)

    # ---- planning ----
    def plan(self, rows_per_unit: int) -> list[dict[str, Any]]:
        """Row ranges [start, stop) of at most rows_per_unit rows (JSONL ranges also carry a byte offset)."""
        if self.format == "jsonl":
            return self._plan_jsonl(rows_per_unit)
        n = self.count_rows()
        return [{"start": s, "stop": min(s + rows_per_unit, n)} for s in range(0, n, rows_per_unit)]

    def count_rows(self) -> int:
        if self.format == "parquet":
            return self._parquet().metadata.num_rows  # from the footer: no data read
        if self.format in ("csv", "tsv"):
            col = self.columns()["url"]
            return sum(1 for _ in self._csv_records([col]))
        return sum(1 for _ in self._jsonl_lines(0))

    def _jsonl_lines(self, offset: int) -> Iterator[tuple[int, bytes | None]]:
        """(byte offset, line) of non-blank lines from `offset` (offset only meaningful uncompressed);
        a line over MAX_LINE_BYTES is (offset, None), skipped without being held."""
        with self._open() as f:
            if offset:
                f.seek(offset)
            pos = offset
            while line := f.readline(MAX_LINE_BYTES + 1):
                start, size = pos, len(line)
                while len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    line = f.readline(MAX_LINE_BYTES + 1)  # the rest of the long line, dropped
                    size += len(line)
                    if not line:
                        break
                pos += size
                if size > MAX_LINE_BYTES:
                    yield start, None
                elif line.strip():
                    yield start, line

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
        pf = self._parquet()
        first = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:  # only the row groups that overlap the range are read
                try:
                    table = pf.read_row_group(g, columns=sorted(set(cols.values())), use_threads=False)
                    records = table.slice(lo - first, hi - lo).to_pylist()
                except Exception as err:  # a corrupt row group: its rows fail, the others are read
                    reason = f"bad_file: row group {g} unreadable: {type(err).__name__}: {err}"[:300]
                    records = [None] * (hi - lo)
                for i, raw in enumerate(records):
                    yield lo + i, canonical_row(raw, cols) if raw is not None else problem_row(reason)
            first += n
            if first >= stop:
                break

    def _csv_rows(self, cols: dict[str, str], start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, row in enumerate(self._csv_records(sorted(set(cols.values())))):
            if i >= stop:
                break
            if i >= start:
                yield i, row

    def _jsonl_rows(self, cols: dict[str, str], start: int, stop: int, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
        i = start if offset else 0
        for _, line in self._jsonl_lines(offset):
            if i >= stop:
                break
            if i >= start:
                raw, problem = _json_line(line)
                if problem:
                    yield i, problem_row(problem)
                elif not isinstance(raw, dict):
                    yield i, problem_row(f"metadata: line is a JSON {type(raw).__name__}, not an object")
                else:
                    yield i, canonical_row(raw, cols)
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


def _json_line(line: bytes | None) -> tuple[Any, str | None]:
    """One JSONL line parsed, or (None, why it cannot be)."""
    if line is None:
        return None, f"metadata: line over {MAX_LINE_BYTES} bytes"
    try:
        return json.loads(line), None
    except UnicodeDecodeError:
        return None, "metadata: line is not UTF-8"
    except (ValueError, RecursionError) as err:
        return None, f"metadata: line is not valid JSON ({type(err).__name__})"
