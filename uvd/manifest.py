"""The manifest: a small manifest.json (config, schema version, totals, where the table is) and the
unit/shard table manifest/units.parquet (one row per unit: status, counts, its shard and audit).

manifest.json stays a few KB whatever the unit count; readers that need units or shards read the table.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
])
_COUNTS = ("inputs", "ok", "failed", "sentences", "images")
_GROUP = 8192  # rows per row group of the units table


def unit_row(dataset: str, unit: str, stats: dict[str, Any], recipe: dict[str, Any],
             listed: Listed | None = None) -> dict[str, Any]:
    """A done unit's table row from its stats (and its stats file's listing, when known)."""
    row = {"dataset": dataset, "unit": unit, "status": "done", "error": None,
           **{k: int(stats.get(k, 0)) for k in _COUNTS}, "tokens": stats.get("tokens"),
           "failures": json.dumps(stats.get("failures", {}), sort_keys=True),
           "tasks": json.dumps(stats.get("tasks", {}), sort_keys=True),
           "recipe": json.dumps(recipe, sort_keys=True),
           "stats_size": listed.size if listed else None, "stats_version": listed.version if listed else None}
    for kind in ("shard", "audit"):
        for k in ("path", "rows", "bytes", "sha256"):
            row[f"{kind}_{k}"] = stats.get(kind, {}).get(k)
    return row


def failed_row(dataset: str, unit: str, error: str) -> dict[str, Any]:
    return {"dataset": dataset, "unit": unit, "status": "failed", "error": error}


def read_units_table(base: str) -> pa.Table | None:
    """The units table under `base`; None when there is none, or it is unreadable or of another schema."""
    try:
        fs, path = fs_and_path(units_table(base))
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f, pre_buffer=False)
            # batch by batch (row groups of _GROUP rows): decoding buffers stay bounded at 10^5+ units
            table = pa.Table.from_batches(list(pf.iter_batches(batch_size=_GROUP, use_threads=False)), pf.schema_arrow)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    return table if table.schema.remove_metadata().equals(UNITS_SCHEMA) else None


def read_units(base: str) -> list[dict[str, Any]]:
    """The units table under `base` as rows; [] when there is none."""
    table = read_units_table(base)
    return table.to_pylist() if table is not None else []


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

    `done` maps committed units to their row: a dict, or an index into `done.table` (the previous
    table, see uvd.engine.Committed), whose rows are carried over in Arrow. When the run wrote
    stats files, one more listing per dataset records their versions, so the next run trusts
    them without reading them; a run that built nothing lists nothing again.
    """
    errors = errors or {}
    old = getattr(done, "table", None)
    old_rows: list[int] = []
    chunks: list[pa.Table] = []  # new rows, converted to Arrow 10^4 at a time
    pending: list[dict[str, Any]] = []
    n_new = 0
    relist = False
    order: list[int] = []  # ≥ 0: position among the old rows taken; < 0: -(1 + position among the new rows)
    for u in units:
        row = done.get(u.name)
        if isinstance(row, int):
            order.append(len(old_rows))
            old_rows.append(row)
            continue
        row = row() if callable(row) else row  # built units: their row is made now (uvd.engine)
        row = row if row is not None else failed_row(u.dataset, u.unit, errors.get(u.name, "not built"))
        relist = relist or (row["status"] == "done" and row.get("stats_version") is None)
        order.append(-1 - n_new)
        n_new += 1
        pending.append(row)
        if len(pending) >= 10_000:
            chunks.append(pa.Table.from_pylist(pending, schema=UNITS_SCHEMA))
            pending = []
    chunks.append(pa.Table.from_pylist(pending, schema=UNITS_SCHEMA))
    if n_new == 0 and old is not None and old_rows == list(range(old.num_rows)):
        table = old  # a rerun of the same plan: the previous table as it is, no copy
    else:
        parts = ([old.take(old_rows)] if old_rows else []) + chunks
        n_old = len(old_rows)
        table = pa.concat_tables(parts).take([i if i >= 0 else n_old - 1 - i for i in order])
    del old_rows, chunks, pending, order
    if relist:
        table = _with_listed_versions(layout, units, table, errors)
    with atomic_open(units_table(layout.base)) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=_GROUP)
    manifest = {**header, "schema_version": SCHEMA_VERSION, "totals": totals(table),
                "units_table": relative(layout.base, units_table(layout.base))}
    write_json(manifest_url(layout.base), manifest)
    return manifest


def _with_listed_versions(layout: UnitLayout, units: list[Any], table: pa.Table,
                          errors: dict[str, str]) -> pa.Table:
    """Each done row's stats file size and version from a fresh listing; a done unit whose stats
    file is gone is marked failed."""
    listed = list_stats(layout, units)
    status, error = table.column("status").to_pylist(), table.column("error").to_pylist()
    sizes, versions = table.column("stats_size").to_pylist(), table.column("stats_version").to_pylist()
    for i, u in enumerate(units):
        info = listed.get((u.dataset, u.unit))
        if status[i] != "done":
            continue
        if info is None:
            status[i], error[i] = "failed", errors.get(u.name, "not built")
        else:
            sizes[i], versions[i] = info.size, info.version
    for name, values in (("status", status), ("error", error), ("stats_size", sizes), ("stats_version", versions)):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, UNITS_SCHEMA.field(name).type))
    return table


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
