"""The unit engine, one for builds and tokenizing: run a unit and commit it, find what is committed, account.

A unit writes one data shard, its audit shard and, last, its stats file (the commit marker):
a unit without a stats file is not done and is redone. What is done is learnt from one listing
per dataset folder plus the previous run's units table (uvd.manifest), reading only the stats
files the listing shows to be new or rewritten, in parallel. Ray tasks (builds) or a Ray Data
actor pool (tokenizing) decide where units run; everything else about a unit is here. A unit
is any object with `.dataset`, `.unit` and `.name` ("<dataset>/<unit>").
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from uvd.audit import AuditLog
from uvd.layout import UnitLayout, list_stats, relative
from uvd.manifest import iter_units_index, unit_row, write_manifest
from uvd.shards import ShardWriter
from uvd.storage import Listed, fs_and_path, list_names, parallel_map, read_json, uses_rename, write_json_listed

logger = logging.getLogger(__name__)


class NoProgress:
    """The progress interface the engine reports to; this one shows nothing."""

    def update(self, units: int = 0, items: int = 0, failed: int = 0) -> None:
        pass


Fill = Callable[[ShardWriter, AuditLog, Counter], dict[str, Any]]


def commit_unit(layout: UnitLayout, dataset: str, unit: str, open_writer: Callable[[str], ShardWriter],
                fill: Fill, meta: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """Write one unit (data shard, audit, then the stats file) and return its stats.

    `fill(writer, audit, seconds)` adds the rows and audits every input; it returns extra stats.
    If it raises, the data shard is aborted (nothing appears under its name) and nothing is
    committed. `head` (the recipe fields among them) goes into the stats as is. Temporaries a
    killed attempt left behind are swept once per run (`sweep_temps`), not globbed for per unit.
    """
    t0 = time.perf_counter()
    shard_url, audit_url, stats_url = (layout.shard(dataset, unit), layout.audit_shard(dataset, unit),
                                       layout.stats(dataset, unit))
    audit = AuditLog()
    seconds: Counter[str] = Counter()
    writer = open_writer(shard_url)
    try:
        extra = fill(writer, audit, seconds)
        info = writer.close()
    except BaseException:
        writer.abort()
        raise
    audit_info = audit.write(audit_url, meta)
    counts = audit.counts()
    stats = {
        **head, **counts, "sentences": info.rows, **extra,
        # Paths relative to the base, so a finished output can be moved or copied as a whole.
        "shard": {"path": relative(layout.base, shard_url), "rows": info.rows, "bytes": info.bytes,
                  "sha256": info.sha256},
        "audit": {"path": relative(layout.base, audit_url), "rows": counts["inputs"], "bytes": audit_info.bytes,
                  "sha256": audit_info.sha256},
        "seconds": {k: round(v, 4) for k, v in {**seconds, "total": time.perf_counter() - t0}.items()},
    }
    listed = write_json_listed(stats_url, stats)  # last: from now on the unit counts as done
    # what a listing will show of the stats file: the manifest records it without listing again
    return {**stats, "stats_file": listed._asdict()} if listed else stats


def recipe_json(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True)


class Committed(dict):
    """Unit name → its units-table row: an index into the previous run's table or a row dict.

    Rows the previous table holds stay in its file (`base`'s units table): uvd.manifest reads
    it again only if the table must be rewritten, so a rerun never holds it in memory.
    """

    def __init__(self, base: str | None = None) -> None:
        super().__init__()
        self.base = base


def find_committed(layout: UnitLayout, units: list[Any], recipe_of: Callable[[Any], dict[str, Any]],
                   threads: int = 16) -> Committed:
    """Units committed with the recipe `recipe_of(unit)` wants.

    A stats file the previous units table recorded at the same version is trusted without a
    read; the others (written by an interrupted run, or rewritten since) are read in parallel.
    The table is read a batch at a time in step with the plan (it is written in plan order);
    only when the plan changed is an index of it built.
    """
    listed = list_stats(layout, units)
    done = Committed(layout.base)
    rows = iter_units_index(layout.base)
    index: dict[str, tuple[int, int, int, int]] | None = None  # name → (row, size, hash(version), hash(recipe))

    def known(r: tuple) -> tuple[int, int, int, int]:
        return r[0], r[4], hash(r[5]), hash(r[6])

    to_read: list[tuple[Any, Listed, str]] = []
    for u in units:
        info = listed.pop((u.dataset, u.unit), None)
        k = None
        if index is None:
            r = next(rows, None)
            if r is not None and r[1] == u.dataset and r[2] == u.unit:
                k = known(r) if r[3] == "done" else None
            else:  # the plan changed since the table was written: index what is left of it
                index = {f"{x[1]}/{x[2]}": known(x) for x in itertools.chain([r] if r else [], rows) if x[3] == "done"}
        if index is not None:
            k = index.pop(u.name, None)
        if info is None:
            continue
        want = recipe_json(recipe_of(u))
        if k and info.version and (k[1], k[2]) == (info.size, hash(info.version)):
            if k[3] == hash(want):
                done[u.name] = k[0]
            continue
        to_read.append((u, info, want))
    del listed, index

    def read(entry: tuple[Any, Listed, str]) -> dict[str, Any] | None:
        try:
            return read_json(layout.stats(entry[0].dataset, entry[0].unit))
        except Exception:  # unreadable marker: not committed, the unit is redone
            return None

    for (u, info, want), st in zip(to_read, parallel_map(read, to_read, threads)):
        if st is not None and recipe_json({k: st.get(k) for k in json.loads(want)}) == want:
            done[u.name] = unit_row(u.dataset, u.unit, st, json.loads(want), info)
    if to_read:
        logger.info("read %d stats files not in the units table", len(to_read))
    return done


_ROW_STATS = {"inputs", "ok", "failed", "sentences", "images", "tokens", "failures", "tasks", "shard", "audit",
              "stats_file"}


@dataclass
class Summary:
    """What a run did: units planned/skipped/built/failed and the items of the units it built."""

    units: int = 0
    skipped: int = 0
    built: int = 0
    failed_units: dict[str, str] = field(default_factory=dict)
    inputs: int = 0
    ok: int = 0
    failed: int = 0
    sentences: int = 0
    images: int = 0
    failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    # name → stats of units built in this run, as compact JSON of what the manifest row needs (a run
    # may build 10^5 units; one string each is a fraction of the dicts' memory)
    stats: dict[str, str] = field(default_factory=dict, repr=False)

    def unit_stats(self, name: str) -> dict[str, Any]:
        return json.loads(self.stats[name])

    @property
    def succeeded(self) -> bool:
        """Every planned unit is committed (bad items may still have failed, with reasons)."""
        return not self.failed_units

    def add(self, name: str, stats: dict[str, Any], progress: Any = None) -> None:
        self.built += 1
        kept = {k: v for k, v in stats.items() if k in _ROW_STATS}
        self.stats[name] = json.dumps({**kept, "seconds": {"total": stats["seconds"]["total"]}}, separators=(",", ":"))
        for k in ("inputs", "ok", "failed", "sentences", "images"):
            setattr(self, k, getattr(self, k) + stats[k])
        self.failures.update(stats["failures"])
        (progress or NoProgress()).update(units=1, items=stats["inputs"], failed=stats["failed"])

    def fail(self, name: str, error: str, progress: Any = None) -> None:
        self.failed_units[name] = error
        (progress or NoProgress()).update(units=1, failed=1)  # a lost unit counts as a failure

    def report(self) -> str:
        rate = self.images / self.seconds if self.seconds else 0.0
        lines = [
            f"units: {self.units} planned, {self.skipped} already done, {self.built} built, "
            f"{len(self.failed_units)} failed",
            f"items: {self.inputs} read, {self.ok} ok, {self.failed} failed",
            f"sentences: {self.sentences}   images: {self.images}   {rate:.1f} images/s over {self.seconds:.1f}s",
        ]
        if self.failures:
            lines.append("failures by reason: " + ", ".join(f"{k} {v}" for k, v in self.failures.most_common()))
        for name, err in sorted(self.failed_units.items()):
            lines.append(f"UNIT FAILED {name}: {err}")
        return "\n".join(lines)


def sweep_temps(layout: UnitLayout, datasets: Iterable[str]) -> int:
    """Remove the `.tmp-` files killed attempts left (POSIX only: object stores get none); returns how many.

    Called when no unit of this output is running any more (at the end of a run), so every
    temporary found is stale.
    """
    fs, _ = fs_and_path(layout.base)
    if not uses_rename(fs):
        return 0
    removed = 0
    for ds in sorted(set(datasets)):
        for folder in (f"{layout.data}/{ds}", f"{layout.audit}/{ds}"):
            for name in list_names(folder):
                if ".tmp-" in name:
                    fs.rm(fs_and_path(f"{folder}/{name}")[1])
                    removed += 1
    if removed:
        logger.info("removed %d temporary files left by interrupted writes", removed)
    return removed


def write_run_manifest(layout: UnitLayout, header: dict[str, Any], units: list[Any], done: Committed,
                       summary: Summary, recipe_of: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The manifest after a run: units found committed at the start plus those this run built (their
    stats came back from the tasks, so no stats file is read again)."""
    sweep_temps(layout, (u.dataset for u in units))
    for u in units:
        if u.name in summary.stats:  # made into a row only when the table is written, a chunk at a time
            done[u.name] = functools.partial(_row_of, u, summary.stats[u.name], recipe_of)
    return write_manifest(layout, header, units, done, summary.failed_units)


def _row_of(u: Any, stats_json: str, recipe_of: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    stats = json.loads(stats_json)
    listed = Listed(**stats["stats_file"]) if stats.get("stats_file") else None
    return unit_row(u.dataset, u.unit, stats, recipe_of(u), listed)


def short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]
