"""The manifest: a small manifest.json (config, schema version, totals, where the table is) and the
unit/shard table manifest/units.parquet (one row per unit: status, counts, its shard and audit).

manifest.json stays a few KB whatever the unit count; readers that need units or shards read the table.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from uvd.layout import UnitLayout, relative
from uvd.layout import manifest as manifest_url
from uvd.layout import units_table
from uvd.storage import atomic_open, exists, fs_and_path, join, write_json

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


def unit_row(dataset: str, unit: str, stats: dict[str, Any], recipe: dict[str, Any],
             listed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A done unit's table row from its stats (and its stats file's listing, when known)."""
    row = {"dataset": dataset, "unit": unit, "status": "done", "error": None,
           **{k: int(stats.get(k, 0)) for k in _COUNTS}, "tokens": stats.get("tokens"),
           "failures": json.dumps(stats.get("failures", {}), sort_keys=True),
           "tasks": json.dumps(stats.get("tasks", {}), sort_keys=True),
           "recipe": json.dumps(recipe, sort_keys=True),
           "stats_size": (listed or {}).get("size"), "stats_version": (listed or {}).get("version")}
    for kind in ("shard", "audit"):
        for k in ("path", "rows", "bytes", "sha256"):
            row[f"{kind}_{k}"] = stats.get(kind, {}).get(k)
    return row


def failed_row(dataset: str, unit: str, error: str) -> dict[str, Any]:
    return {"dataset": dataset, "unit": unit, "status": "failed", "error": error}


def read_units(base: str) -> list[dict[str, Any]]:
    """The units table under `base` as rows; [] when there is none (or it is unreadable)."""
    url = units_table(base)
    try:
        fs, path = fs_and_path(url)
        with fs.open(path, "rb") as f:
            return pq.read_table(f).to_pylist()
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return []


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


def write_manifest(layout: UnitLayout, header: dict[str, Any], units: list[Any], done: dict[str, dict[str, Any]],
                   errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Write manifest/units.parquet (every planned unit, in plan order) and then manifest.json.

    `done` holds the rows of committed units (from the run's stats and the start listing). When
    the run wrote stats files, one more listing per dataset records their versions, so the next
    run trusts them without reading them; a run that built nothing lists nothing again.
    """
    from uvd.engine import list_stats

    errors = errors or {}
    listed = None
    if any(r.get("stats_version") is None for r in done.values()):
        listed = list_stats(layout, units)
    rows = []
    for u in units:
        row = done.get(u.name)
        info = row and (listed.get((u.dataset, u.unit)) if listed is not None
                        else {"size": row["stats_size"], "version": row["stats_version"]})
        if row is None or info is None:
            rows.append(failed_row(u.dataset, u.unit, errors.get(u.name, "not built")))
            continue
        rows.append({**row, "stats_size": info["size"], "stats_version": info["version"]})
    table = pa.Table.from_pylist(rows, schema=UNITS_SCHEMA)
    with atomic_open(units_table(layout.base)) as f:
        pq.write_table(table, f, compression="zstd")
    manifest = {**header, "schema_version": SCHEMA_VERSION, "totals": totals(rows),
                "units_table": relative(layout.base, units_table(layout.base))}
    write_json(manifest_url(layout.base), manifest)
    return manifest


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sums: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    done = [r for r in rows if r["status"] == "done"]
    for r in done:
        for k in _COUNTS:
            sums[k] += r[k]
        if r.get("tokens") is not None:
            sums["tokens"] += r["tokens"]
        sums["bytes"] += r["shard_bytes"]
        failures.update(json.loads(r["failures"]))
        tasks.update(json.loads(r["tasks"]))
    per_token = {"bytes_per_token": round(sums["bytes"] / sums["tokens"], 4)} if sums["tokens"] else {}
    return {**dict(sums), **per_token, "units": len(rows), "units_done": len(done),
            "failures": dict(sorted(failures.items())), "tasks": dict(sorted(tasks.items()))}


def resolve(base: str, path: str) -> str:
    """Table paths are relative to the base (so an output can move); absolute URLs pass through."""
    return path if "://" in path or path.startswith("/") else join(base, path)
