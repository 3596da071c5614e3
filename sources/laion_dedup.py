"""Build-wide URL and hash dedup of LAION metadata, before anything is downloaded.

Two `uvd.dedup.first_wins` passes over the planned units (hash-partitioned, on Ray when it
runs): first by item id (the `hash` column, or the URL's hash), then, among the survivors,
by URL. The first occurrence by (metadata file, row) is kept; every other row is recorded in
its unit's payload as `duplicates: {row: "duplicate: of <kept id> (same …)"}` and audited so.
Rows the metadata filters refuse, and rows without URL or id, take no part: they fail
before downloading anyway. Two passes (not one over both keys) so that every dropped row
points to a row that is kept.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable

from sources.filters import UnitFilters
from sources.laion_metadata import derive_id, metadata_file
from uvd.dedup import Triple, first_wins


def _unit_rows(options: Any, file_index: int, payload: dict[str, Any]) -> Iterable[tuple[int, str, str]]:
    """(row, item id, url) of the rows of one unit that would be downloaded."""
    mf = metadata_file(options, payload["file"], payload["format"])
    filters = UnitFilters(options.filters)
    for index, row in mf.rows(payload["start"], payload["stop"], payload.get("offset", 0)):
        base = derive_id(row, options.id_from)
        if row["url"] and base and not filters.check_metadata(row):
            yield index, base, row["url"]


def _id_keys(task: tuple[Any, int, dict[str, Any]]) -> Iterable[Triple]:
    options, file_index, payload = task
    for index, base, _ in _unit_rows(options, file_index, payload):
        yield "id:" + base, (file_index, index), base


def _url_keys(task: tuple[Any, int, dict[str, Any], set[int]]) -> Iterable[Triple]:
    options, file_index, payload, gone = task
    for index, base, url in _unit_rows(options, file_index, payload):
        if index not in gone:
            yield "url:" + url, (file_index, index), base


def mark_duplicates(options: Any, files: list[str], units: list[dict[str, Any]]) -> None:
    """Add `duplicates` to the unit payloads (in place) for rows an earlier row already covers."""
    rows = sum(u["stop"] - u["start"] for u in units)
    partitions = max(16, -(-rows // 4_000_000))  # a few million keys per reduce task
    file_index = {f: i for i, f in enumerate(files)}
    tasks = [(options, file_index[u["file"]], u) for u in units]
    by_id = first_wins(tasks, _id_keys, partitions)
    gone: dict[int, set[int]] = {}
    for (fi, row), _, _, _ in by_id:
        gone.setdefault(fi, set()).add(row)
    by_url = first_wins([(o, fi, u, {r for r in gone.get(fi, ()) if u["start"] <= r < u["stop"]})
                         for o, fi, u in tasks], _url_keys, partitions)

    per_file: dict[int, list[dict[str, Any]]] = {}
    for _, fi, u in tasks:
        per_file.setdefault(fi, []).append(u)
    starts = {fi: sorted(us, key=lambda u: u["start"]) for fi, us in per_file.items()}
    first_rows = {fi: [u["start"] for u in us] for fi, us in starts.items()}
    for found, how in ((by_id, None), (by_url, "same url")):
        for (fi, row), _, kept, _ in found:
            unit = starts[fi][bisect.bisect_right(first_rows[fi], row) - 1]
            why = how or ("same hash" if kept.startswith("hash-") else "same url")
            unit.setdefault("duplicates", {})[str(row)] = f"duplicate: of {kept} ({why})"
