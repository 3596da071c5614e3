"""Build-wide URL and hash dedup of LAION metadata, before anything is downloaded, kept as an index.

Two `uvd.dedup.first_wins_stored` passes (hash-partitioned, on Ray when it runs): first by
item id (the `hash` column, or the URL's hash), then, among the survivors, by URL. The first
occurrence in plan order (unit, then row) is kept; every other row is recorded as
`duplicate: of <kept id> (same …)` and audited so. Rows the metadata filters refuse, and rows
without URL or id, take no part: they fail before downloading anyway. Two passes (not one
over both keys) so that every dropped row points to a row that is kept.

The index lives in the output (`<out>/dedup/sources/<dataset>/`): `ids/` and `urls/` (every
key seen, by partition), `duplicates/` (unit → its duplicate rows, by partition) and
`units.parquet` (the units indexed and the identity of each: options and payload), written
last. Only units not yet indexed have their metadata rows read; the index is consulted only
when some unit is to be built, so a rerun of a finished build reads no metadata row.

The order rule, incrementally: a unit added to the index comes after every indexed unit in
plan order (an appended metadata file), so no row of it can be the first occurrence of a key
an indexed row holds, and the indexed units' answers stand: the result is the one-shot one.
A unit rebuilt (failed, lost) keeps its recorded answer. Any other change of an indexed
unit (a file removed, a unit's rows or the options changed, a new unit planned before an
indexed one) could move first occurrences, so the index is rebuilt from every planned unit.
"""
from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from sources.filters import UnitFilters
from sources.laion_metadata import derive_id, metadata_file
from uvd.url_redact import url_digest
from uvd.config import recipe_dump
from uvd.dedup import (Triple, first_wins_stored, partition_of, read_owner_table, read_parquet, unit_rank,
                       write_owner_table, write_partition)
from uvd.seeding import stable_hash
from uvd.storage import fs_and_path, join
from uvd.unit import DERIVED, payload_hash

DUP_SCHEMA = pa.schema([("owner", pa.string()), ("row", pa.int64()), ("reason", pa.string())])
DUP_PARTITIONS = 16


def _unit_rows(options: Any, payload: dict[str, Any]) -> Iterable[tuple[int, str, str]]:
    """(row, item id, url) of the rows of one unit that would be downloaded."""
    mf = metadata_file(options, payload["file"], payload["format"])
    filters = UnitFilters(options.filters)
    for index, row in mf.rows(payload["start"], payload["stop"], payload.get("offset", 0)):
        base = derive_id(row, options.id_from)
        if row["url"] and base and not filters.check_metadata(row):
            yield index, base, row["url"]


def _id_keys(task: tuple[Any, str, dict[str, Any]]) -> Iterable[Triple]:
    options, owner, payload = task
    for index, base, _ in _unit_rows(options, payload):
        yield "id:" + base, (owner, index), base


def _url_keys(task: tuple[Any, str, dict[str, Any], set[int]]) -> Iterable[Triple]:
    options, owner, payload, gone = task
    for index, base, url in _unit_rows(options, payload):
        if index not in gone:
            yield "url:" + url_digest(url), (owner, index), base  # the index is written: no URL secrets


def _remove_index(index: str) -> None:
    fs, path = fs_and_path(index)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _dup_url(index: str, p: int) -> str:
    return join(index, "duplicates", f"part-{p:05d}.parquet")


def _store_duplicates(index: str, found: dict[str, dict[str, str]], owners: set[str]) -> None:
    """Replace the recorded duplicates of `owners` by `found` (owner → {row: reason})."""
    touched = {partition_of(o, DUP_PARTITIONS) for o in owners}
    for p in sorted(touched):
        table = read_parquet(_dup_url(index, p))
        rows = [] if table is None else [r for r in table.to_pylist() if r["owner"] not in owners]
        rows += [{"owner": o, "row": int(r), "reason": why} for o, dups in found.items()
                 if partition_of(o, DUP_PARTITIONS) == p for r, why in dups.items()]
        rows.sort(key=lambda r: (r["owner"], r["row"]))
        write_partition(_dup_url(index, p), pa.Table.from_pylist(rows, schema=DUP_SCHEMA))


def _recorded_duplicates(index: str, owners: set[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {o: {} for o in owners}
    wanted = pa.array(sorted(owners), pa.string())
    for p in sorted({partition_of(o, DUP_PARTITIONS) for o in owners}):
        table = read_parquet(_dup_url(index, p))
        if table is None:
            continue
        table = table.filter(pc.is_in(table.column("owner"), value_set=wanted))  # a partition holds many units
        for owner, row, reason in zip(*(table.column(c).to_pylist() for c in ("owner", "row", "reason"))):
            out[owner][str(row)] = reason
    return out


def prepare_duplicates(options: Any, index: str, planned: list[Any], pending: list[Any]) -> None:
    """Give every pending unit (`.unit`, `.payload`) its `duplicates: {row: reason}` under the
    payload's DERIVED key, indexing first the planned units the index does not hold."""
    units_url = join(index, "units.parquet")
    opts = recipe_dump(options)
    identity = {unit_rank(u.unit): stable_hash(opts, payload_hash(u.payload)) for u in planned}
    indexed = read_owner_table(units_url, "identity")
    new = [u for u in planned if indexed.get(unit_rank(u.unit)) != identity[unit_rank(u.unit)]]
    stale = [o for o, i in indexed.items() if identity.get(o) != i]
    if stale or (new and indexed and min(unit_rank(u.unit) for u in new) < max(indexed)):
        _remove_index(index)  # not an append: first occurrences may move, decide everything again
        indexed, new = {}, list(planned)
    if new:
        _index(options, index, new)
        write_owner_table(units_url, "identity", {**indexed, **{unit_rank(u.unit): identity[unit_rank(u.unit)]
                                                               for u in new}})  # last: what the index holds
    recorded = _recorded_duplicates(index, {unit_rank(u.unit) for u in pending})
    for u in pending:
        u.payload[DERIVED] = {"duplicates": recorded[unit_rank(u.unit)]}


def _index(options: Any, index: str, new: list[Any]) -> None:
    """Add the rows of `new` units (all after the indexed ones in plan order) to the index."""
    rows = sum(u.payload["stop"] - u.payload["start"] for u in new)
    partitions = max(16, -(-rows // 4_000_000))  # a few million keys per reduce task
    owners = {unit_rank(u.unit) for u in new}
    tasks = [(options, unit_rank(u.unit), u.payload) for u in new]
    by_id = [d for d in first_wins_stored(join(index, "ids"), tasks, _id_keys, owners, partitions) if d[0][0] in owners]
    gone: dict[str, set[int]] = {}
    for (owner, row), _, _, _ in by_id:
        gone.setdefault(owner, set()).add(row)
    by_url = [d for d in first_wins_stored(join(index, "urls"), [(o, w, p, gone.get(w, set())) for o, w, p in tasks],
                                           _url_keys, owners, partitions) if d[0][0] in owners]
    found: dict[str, dict[str, str]] = {o: {} for o in owners}
    for kind, dropped in (("id", by_id), ("url", by_url)):
        for (owner, row), _, kept, _ in dropped:
            why = "same url" if kind == "url" or not kept.startswith("hash-") else "same hash"
            found[owner][str(row)] = f"duplicate: of {kept} ({why})"
    _store_duplicates(index, found, owners)
