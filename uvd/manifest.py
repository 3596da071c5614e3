"""The manifest: a small manifest.json (config, schema version, totals, where the table is) and the
unit/shard table manifest/units.parquet (one row per unit: status, counts, its shard and audit).

manifest.json stays a few KB whatever the unit count; readers that need units or shards read the table.
"""
from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from uvd import faults
from uvd.layout import UnitLayout, list_stats, relative
from uvd.layout import manifest as manifest_url
from uvd.layout import units_table
from uvd.storage import Listed, atomic_open, exists, fs_and_path, join, write_json

SCHEMA_VERSION = 1
UNITS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("unit", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("inputs", pa.int64()), ("ok", pa.int64()), ("failed", pa.int64()), ("sentences", pa.int64()),
    ("images", pa.int64()), ("tokens", pa.int64()),
    ("failures", pa.string()), ("tasks", pa.string()),  # JSON objects: reason → count, task → sentences
    ("recipe", pa.string()),  # JSON: what the unit was built for (compared on the next run)
    ("stats_size", pa.int64()), ("stats_version", pa.string()),  # the stats file as last listed
    ("shard_path", pa.string()), ("shard_rows", pa.int64()), ("shard_bytes", pa.int64()), ("shard_sha256", pa.string()),
    ("audit_path", pa.string()), ("audit_rows", pa.int64()), ("audit_bytes", pa.int64()), ("audit_sha256", pa.string()),
    ("shard_version", pa.string()),  # the data shard as last listed (None where the store did not say)
])
_COUNTS = ("inputs", "ok", "failed", "sentences", "images")
_GROUP = 8192  # rows per row group of the units table


def unit_row(dataset: str, unit: str, stats: dict[str, Any], recipe: dict[str, Any],
             listed: Listed | None = None, shard: Listed | None = None) -> dict[str, Any]:
    """A done unit's table row from its stats (and its stats file's and shard's listings, when known)."""
    row = {"dataset": dataset, "unit": unit, "status": "done", "error": None,
           **{k: int(stats.get(k, 0)) for k in _COUNTS}, "tokens": stats.get("tokens"),
           "failures": json.dumps(stats.get("failures", {}), sort_keys=True),
           "tasks": json.dumps(stats.get("tasks", {}), sort_keys=True),
           "recipe": json.dumps(recipe, sort_keys=True),
           "stats_size": listed.size if listed else None, "stats_version": listed.version if listed else None}
    for kind in ("shard", "audit"):
        for k in ("path", "rows", "bytes", "sha256"):
            row[f"{kind}_{k}"] = stats.get(kind, {}).get(k)
    row["shard_version"] = shard.version if shard and shard.version else None
    return row


def failed_row(dataset: str, unit: str, error: str) -> dict[str, Any]:
    return {"dataset": dataset, "unit": unit, "status": "failed", "error": error}


@contextlib.contextmanager
def _open_table(base: str) -> Iterator[pq.ParquetFile | None]:
    """The units table under `base` opened for reading; None when there is none or it has another schema."""
    url = units_table(base)
    try:
        fs, path = fs_and_path(url)
        # Local: by path, pyarrow's own file (a Python file object under Arrow's threads can abort
        # the process at exit: `uvd validate` exited 134 after printing OK).
        f = None if "://" not in url or url.startswith("file://") else fs.open(path, "rb")
    except (FileNotFoundError, OSError):
        yield None
        return
    with f if f is not None else contextlib.nullcontext():
        try:
            pf = pq.ParquetFile(path) if f is None else pq.ParquetFile(f, pre_buffer=False)
        except (OSError, pa.ArrowInvalid):
            pf = None
        yield pf if pf is not None and pf.schema_arrow.remove_metadata().equals(UNITS_SCHEMA) else None


def read_units_table(base: str, columns: list[str] | None = None) -> pa.Table | None:
    """The units table under `base` (or those `columns` of it); None when there is none, or it is
    unreadable or of another schema."""
    try:
        with _open_table(base) as pf:
            if pf is None:
                return None
            # batch by batch (row groups of _GROUP rows): decoding buffers stay bounded at 10^5+ units
            batches = list(pf.iter_batches(batch_size=_GROUP, columns=columns, use_threads=False))
            schema = pf.schema_arrow if columns is None else pa.schema([pf.schema_arrow.field(c) for c in columns])
            return pa.Table.from_batches(batches, schema)
    except (OSError, pa.ArrowInvalid):
        return None


def iter_units_index(base: str) -> Iterator[tuple[int, str, str, str, int, str, str, int, str, int]]:
    """(row, dataset, unit, status, stats_size, stats_version, recipe, shard_bytes, shard_version, audit_bytes) of
    each row of the units table under `base`, read a batch at a time. Nothing when there is no
    readable table of this schema; a table unreadable halfway ends early (the units after it are
    then checked by their stats files)."""
    columns = ["dataset", "unit", "status", "stats_size", "stats_version", "recipe", "shard_bytes", "shard_version",
               "audit_bytes"]
    row = 0
    try:
        with _open_table(base) as pf:
            if pf is None:
                return
            for batch in pf.iter_batches(batch_size=_GROUP, columns=columns, use_threads=False):
                for values in zip(*(batch.column(c).to_pylist() for c in columns)):
                    yield (row, *values)
                    row += 1
    except (OSError, pa.ArrowInvalid):
        return


def read_units(base: str) -> list[dict[str, Any]]:
    """The units table under `base` as rows; [] when there is none."""
    table = read_units_table(base)
    return table.to_pylist() if table is not None else []


def done_units(base: str, columns: list[str] | None = None) -> pa.Table | None:
    """The committed units of the current plan at `base`: the units table's rows with status done
    (None when there is no table). The table holds the plan's units only, so this never names a
    leftover of an earlier plan; readers of a build (tokenizing, training) go through it."""
    table = read_units_table(base, None if columns is None else sorted({*columns, "status"}))
    if table is None:
        return None
    done = table.filter(pc.equal(table.column("status"), "done"))
    return done if columns is None else done.select(columns)


def read_manifest(base: str) -> dict[str, Any] | None:
    from uvd.storage import read_json

    url = manifest_url(base)
    return read_json(url) if exists(url) else None


def shards(rows: list[dict[str, Any]], data_kind: str = "sentences") -> list[dict[str, Any]]:
    """The shards of done units: the data shard (`data_kind`) then its audit, unit by unit."""
    found = []
    for r in rows:
        if r["status"] != "done":
            continue
        for kind, prefix in ((data_kind, "shard"), ("audit", "audit")):
            found.append({"kind": kind, "dataset": r["dataset"], "unit": r["unit"],
                          **{k: r[f"{prefix}_{k}"] for k in ("path", "rows", "bytes", "sha256")}})
    return found


def write_manifest(layout: UnitLayout, header: dict[str, Any], units: list[Any], done: dict[str, Any],
                   errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Write manifest/units.parquet (every planned unit, in plan order) and then manifest.json.

    `done` maps committed units to their row: a dict (or a callable making it), or an index into
    the previous table (`done.base`'s, see uvd.engine.Committed), whose rows are carried over in
    Arrow. A rerun that finds every unit at its place in the previous table leaves that file as
    it is. Otherwise the table is written a chunk of units at a time. A built unit's row records
    its stats file's size and version as the unit's own write returned them (uvd.engine), so the
    next run trusts it without reading it; only where a store does not say is the output listed
    once more.
    """
    errors = errors or {}
    base = getattr(done, "base", None)
    kept = [done.get(u.name) for u in units]  # per unit: old row index, row dict, callable or None
    table_url = units_table(layout.base)
    unchanged = None
    if base == layout.base and all(k == i for i, k in enumerate(kept)):
        unchanged = read_units_table(base, _TOTALS_COLUMNS)
    if unchanged is not None and unchanged.num_rows == len(units):
        summed = totals(unchanged)
    else:
        summed = _write_table(layout, units, kept, base, errors, table_url)
    del kept
    manifest = {**header, "schema_version": SCHEMA_VERSION, "totals": summed,
                "units_table": relative(layout.base, table_url)}
    faults.maybe_die("during_manifest")
    write_json(manifest_url(layout.base), manifest)
    return manifest


_TOTALS_COLUMNS = ["status", *_COUNTS, "tokens", "shard_bytes", "failures", "tasks"]


def _write_table(layout: UnitLayout, units: list[Any], kept: list[Any], base: str | None,
                 errors: dict[str, str], url: str) -> dict[str, Any]:
    """Write the units table, `_GROUP` units at a time; returns its totals."""
    listed: Any = None  # listed once, when a row of this run does not know its stats file's version
    old = read_units_table(base) if base and any(isinstance(k, int) for k in kept) else None
    parts: list[pa.Table] = []
    with atomic_open(url) as f, pq.ParquetWriter(f, UNITS_SCHEMA, compression="zstd") as writer:
        for start in range(0, len(units), _GROUP):
            old_rows: list[int] = []
            new_rows: list[dict[str, Any]] = []
            order: list[int] = []  # ≥ 0: position among the old rows taken; < 0: -(1 + position among the new)
            for u, k in zip(units[start:start + _GROUP], kept[start:start + _GROUP]):
                if isinstance(k, int):
                    order.append(len(old_rows))
                    old_rows.append(k)
                    continue
                row = k() if callable(k) else k  # built units: their row is made now (uvd.engine)
                row = row if row is not None else failed_row(u.dataset, u.unit, errors.get(u.name, "not built"))
                if row["status"] == "done" and row.get("stats_version") is None:
                    if listed is None:
                        listed = list_stats(layout, [v for v, w in zip(units, kept) if not isinstance(w, int)])
                    info = listed.get((u.dataset, u.unit))
                    if info is None:  # its stats file is gone: not committed after all
                        row = failed_row(u.dataset, u.unit, errors.get(u.name, "not built"))
                    else:
                        shard = listed.shard((u.dataset, u.unit))
                        row = {**row, "stats_size": info.size, "stats_version": info.version,
                               "shard_version": row.get("shard_version") or (shard.version if shard else None)}
                order.append(-1 - len(new_rows))
                new_rows.append(row)
            chunk = pa.concat_tables(([old.take(old_rows)] if old_rows else [])
                                     + [pa.Table.from_pylist(new_rows, schema=UNITS_SCHEMA)])
            chunk = chunk.take([i if i >= 0 else len(old_rows) - 1 - i for i in order])
            writer.write_table(chunk, row_group_size=_GROUP)
            parts.append(chunk.select(_TOTALS_COLUMNS))
    empty = pa.Table.from_pylist([], schema=UNITS_SCHEMA).select(_TOTALS_COLUMNS)
    return totals(pa.concat_tables(parts) if parts else empty)


def totals(table: pa.Table) -> dict[str, Any]:
    """Sums over the done units, counted in Arrow (a table of 10^5 units never becomes Python rows)."""
    is_done = pc.equal(table.column("status"), "done")
    done = table if pc.all(is_done).as_py() is not False else table.filter(is_done)
    sums = {k: int(pc.sum(done.column(k)).as_py() or 0) for k in _COUNTS}
    sums["bytes"] = int(pc.sum(done.column("shard_bytes")).as_py() or 0)
    if done.column("tokens").null_count < done.num_rows:
        sums["tokens"] = int(pc.sum(done.column("tokens")).as_py() or 0)
    per_token = {"bytes_per_token": round(sums["bytes"] / sums["tokens"], 4)} if sums.get("tokens") else {}
    merged: dict[str, Counter[str]] = {"failures": Counter(), "tasks": Counter()}
    for name, counter in merged.items():
        for entry in pc.value_counts(done.column(name)).to_pylist():  # distinct JSON objects, with counts
            for k, v in json.loads(entry["values"]).items():
                counter[k] += v * entry["counts"]
    return {**sums, **per_token, "units": table.num_rows, "units_done": done.num_rows,
            "failures": dict(sorted(merged["failures"].items())), "tasks": dict(sorted(merged["tasks"].items()))}


def resolve(base: str, path: str) -> str:
    """Table paths are relative to the base (so an output can move); absolute URLs pass through."""
    return path if "://" in path or path.startswith("/") else join(base, path)
