"""The unit engine, one for builds and tokenizing: run a unit and commit it, find what is committed, account.

A unit first removes its old stats file, then writes one data shard, its audit shard and, last,
its new stats file (the commit marker): a unit without a stats file is not done and is redone,
and a stats file only ever stands beside the shard it describes. What is done is learnt from one
listing per dataset folder (stats files and shards in the same pass) plus the previous run's
units table (uvd.manifest), reading only the stats files the listing shows to be new or
rewritten, in parallel. A stats file whose shard is missing, or listed at another size (or
version) than recorded, does not count. Files of units outside the plan are reported, never
counted. Ray tasks (builds) or a Ray Data
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

from uvd import faults
from uvd.audit import AuditLog
from uvd.layout import UnitLayout, list_stats, relative
from uvd.manifest import iter_units_index, unit_row, write_manifest
from uvd.shards import ShardWriter
from uvd.storage import (Listed, fs_and_path, list_names, listed_if_free, parallel_map, read_json,
                         remove_file, run_id, temp_run_id, uses_rename, write_json_listed)

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
    The unit's old stats file goes first: killed anywhere after that, the unit has no marker
    (not done) rather than an old marker beside a new shard.
    """
    t0 = time.perf_counter()
    shard_url, audit_url, stats_url = (layout.shard(dataset, unit), layout.audit_shard(dataset, unit),
                                       layout.stats(dataset, unit))
    remove_file(stats_url)
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
    faults.maybe_die("before_stats")
    shard_listed = listed_if_free(shard_url)
    listed = write_json_listed(stats_url, stats)  # last: from now on the unit counts as done
    # what a listing will show of the stats file (and the shard): the manifest records it without listing again
    return {**stats, **({"stats_file": listed._asdict()} if listed else {}),
            **({"shard_file": shard_listed._asdict()} if shard_listed else {})}


def recipe_json(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True)


class Committed(dict):
    """Unit name → its units-table row: an index into the previous run's table or a row dict.

    Rows the previous table holds stay in its file (`base`'s units table): uvd.manifest reads
    it again only if the table must be rewritten, so a rerun never holds it in memory.
    `outside_plan` names ("<dataset>/<unit>", sorted) the units whose shard or stats file lies in
    a planned dataset's folder although the plan has no such unit: never counted as done.
    """

    def __init__(self, base: str | None = None) -> None:
        super().__init__()
        self.base = base
        self.outside_plan: list[str] = []


def find_committed(layout: UnitLayout, units: list[Any], recipe_of: Callable[[Any], dict[str, Any]],
                   threads: int = 16) -> Committed:
    """Units committed with the recipe `recipe_of(unit)` wants, their shard in place.

    A stats file the previous units table recorded at the same version is trusted without a
    read; the others (written by an interrupted run, or rewritten since) are read in parallel.
    Either way the unit's shard must be in the same listing at the size recorded (and, for a
    trusted row that recorded it, the same version): a missing, truncated or rewritten shard
    makes the unit pending, with no request beyond the listing.
    The table is read a batch at a time in step with the plan (it is written in plan order);
    only when the plan changed is an index of it built.
    """
    listed = list_stats(layout, units, audits=True)
    done = Committed(layout.base)
    rows = iter_units_index(layout.base)
    # name → (row, stats size, hash(stats version), hash(recipe), shard bytes, shard version, audit bytes)
    index: dict[str, tuple[int, int, int, int, int, str, int]] | None = None

    def known(r: tuple) -> tuple[int, int, int, int, int, str, int]:
        return r[0], r[4], hash(r[5]), hash(r[6]), r[7], r[8], r[9]

    to_read: list[tuple[Any, Listed, str, Listed, Listed]] = []
    for u in units:
        info, shard = listed.pop_unit((u.dataset, u.unit))
        audit = listed.pop_audit((u.dataset, u.unit))
        k = None
        if index is None:
            r = next(rows, None)
            if r is not None and r[1] == u.dataset and r[2] == u.unit:
                k = known(r) if r[3] == "done" else None
            else:  # the plan changed since the table was written: index what is left of it
                index = {f"{x[1]}/{x[2]}": known(x) for x in itertools.chain([r] if r else [], rows) if x[3] == "done"}
        if index is not None:
            k = index.pop(u.name, None)
        # no marker, or a marker without its shard or its audit (every input's row): not committed
        if info is None or shard is None or audit is None:
            continue
        want = recipe_json(recipe_of(u))
        if k and info.version and (k[1], k[2]) == (info.size, hash(info.version)):
            if (k[3] == hash(want) and k[4] == shard.size and (not k[5] or not shard.version or k[5] == shard.version)
                    and (k[6] is None or k[6] == audit.size)):
                done[u.name] = k[0]
            continue
        to_read.append((u, info, want, shard, audit))
    done.outside_plan = [f"{ds}/{unit}" for ds, unit in listed.units_left()]
    del listed, index

    def read(entry: tuple[Any, Listed, str, Listed, Listed]) -> dict[str, Any] | None:
        try:
            return read_json(layout.stats(entry[0].dataset, entry[0].unit))
        except Exception:  # unreadable marker: not committed, the unit is redone
            return None

    for (u, info, want, shard, audit), st in zip(to_read, parallel_map(read, to_read, threads)):
        if (st is not None and recipe_json({k: st.get(k) for k in json.loads(want)}) == want
                and (st.get("shard") or {}).get("bytes") == shard.size
                and (st.get("audit") or {}).get("bytes") in (None, audit.size)):
            done[u.name] = unit_row(u.dataset, u.unit, st, json.loads(want), info, shard)
    if to_read:
        logger.info("read %d stats files not in the units table", len(to_read))
    return done


_ROW_STATS = {"inputs", "ok", "failed", "sentences", "images", "tokens", "failures", "tasks", "shard", "audit",
              "stats_file", "shard_file"}


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
    # units on disk outside the plan ("<dataset>/<unit>", sorted): reported, never counted
    outside_plan: list[str] = field(default_factory=list)
    pruned: int = 0  # of those, removed by this run (`--prune`)
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
        if self.pruned:
            lines.append(f"pruned: removed the files of {self.pruned} units outside the plan")
        if self.outside_plan:
            lines.append(f"outside the plan: {len(self.outside_plan)} units on disk not in this plan, not counted "
                         f"({outside_names(self.outside_plan)}); remove them with `uvd build CONFIG --prune`")
        return "\n".join(lines)


def outside_names(names: list[str], first: int = 5) -> str:
    """The first `first` names, then how many more."""
    more = f", … {len(names) - first} more" if len(names) > first else ""
    return ", ".join(names[:first]) + more


def prune_outside(layout: UnitLayout, names: list[str], threads: int = 16) -> int:
    """Remove the stats file (first: the marker), shard and audit of each unit "<dataset>/<unit>";
    returns how many units. Files already gone are fine."""
    def rm(name: str) -> None:
        ds, unit = name.rsplit("/", 1)
        for url in (layout.stats(ds, unit), layout.shard(ds, unit), layout.audit_shard(ds, unit)):
            remove_file(url)

    parallel_map(rm, names, threads)
    if names:
        logger.info("pruned %d units outside the plan", len(names))
    return len(names)


def sweep_temps(layout: UnitLayout, datasets: Iterable[str], stale_s: float | None = None,
                ended_runs: Iterable[str] = ()) -> int:
    """Remove the `.tmp-` files killed attempts left (POSIX only: object stores get none); returns how many.

    Called when no unit of this run is running any more (at the end of a run). Only temporaries
    of this run (their name carries its run id, uvd.storage.run_id), of `ended_runs` (builds whose
    lease this one took over) or older than `stale_s` (default: the lease's stale limit) go:
    another build's temporary may be in the middle of its write. A file that vanishes meanwhile
    (moved into place, removed) is skipped.
    """
    from uvd.lease import stale_after_s

    fs, _ = fs_and_path(layout.base)
    if not uses_rename(fs):
        return 0
    stale_s = stale_after_s() if stale_s is None else stale_s
    mine = {run_id(), *ended_runs}
    removed = 0
    for ds in sorted(set(datasets)):
        for folder in (f"{layout.data}/{ds}", f"{layout.audit}/{ds}"):
            for name in list_names(folder):
                owner = temp_run_id(name)
                if owner is None:
                    continue
                path = fs_and_path(f"{folder}/{name}")[1]
                try:
                    if owner not in mine and not _older_than(fs, path, stale_s):
                        continue
                    fs.rm_file(path)
                except FileNotFoundError:  # moved into place or removed by its writer meanwhile
                    continue
                removed += 1
    if removed:
        logger.info("removed %d temporary files left by interrupted writes", removed)
    return removed


def _older_than(fs: Any, path: str, seconds: float) -> bool:
    """Whether the file at `path` was last written more than `seconds` ago (FileNotFoundError if gone)."""
    info = fs.info(path)
    mtime = info.get("mtime") or info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return mtime is not None and time.time() - float(mtime) > seconds


def write_run_manifest(layout: UnitLayout, header: dict[str, Any], units: list[Any], done: Committed,
                       summary: Summary, recipe_of: Callable[[Any], dict[str, Any]],
                       ended_runs: Iterable[str] = ()) -> dict[str, Any]:
    """The manifest after a run: units found committed at the start plus those this run built (their
    stats came back from the tasks, so no stats file is read again). Units outside the plan that
    are still on disk are named in it (`outside_plan`: count and the first names), not counted.
    `ended_runs`: see sweep_temps."""
    sweep_temps(layout, (u.dataset for u in units), ended_runs=ended_runs)
    if summary.outside_plan:
        header = {**header, "outside_plan": {"units": len(summary.outside_plan), "first": summary.outside_plan[:20]}}
    for u in units:
        if u.name in summary.stats:  # made into a row only when the table is written, a chunk at a time
            done[u.name] = functools.partial(_row_of, u, summary.stats[u.name], recipe_of)
    return write_manifest(layout, header, units, done, summary.failed_units)


def _row_of(u: Any, stats_json: str, recipe_of: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    stats = json.loads(stats_json)
    listed = Listed(**stats["stats_file"]) if stats.get("stats_file") else None
    shard = Listed(**stats["shard_file"]) if stats.get("shard_file") else None
    return unit_row(u.dataset, u.unit, stats, recipe_of(u), listed, shard)


def short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]
