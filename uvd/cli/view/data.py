"""What `uvd view` shows, read lazily from a build (a local path or any fsspec URL).

At start only manifest.json and the units table are read. A page opens the shards it shows (their
footers are kept), and reads only the row groups and columns it needs: a deep dataset page finds
its unit from the units table's row counts, a sentence its row from the sentence ids of one shard.
The numbers of `/` are the manifest's totals (uvd.manifest.totals over the units table), which are
the numbers `uvd inspect OUT` counts from the shards themselves.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from uvd.layout import UnitLayout, list_stats
from uvd.manifest import read_manifest, read_units_table, resolve, totals
from uvd.shards import open_parquet
from uvd.storage import fs_and_path, parallel_map

PER_PAGE = 24
_ID = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,256}$")  # a sentence id as a builder makes one; anything else is not looked for
_LOCATIONS = 200_000  # sentence id → where it is, for ids already shown (≈40 MB at most)
_OPEN_FILES = 64
_ROW_GROUPS = 4  # image row groups kept (a row group is tens of MB at most)
_UNIT_COLUMNS = ["dataset", "unit", "status", "error", "inputs", "ok", "failed", "sentences", "images", "tokens",
                 "failures", "tasks", "shard_path", "shard_rows", "shard_bytes", "audit_path", "audit_rows"]
META_COLUMNS = ["sentence_id", "source", "task", "layout", "num_images"]


class NotFound(LookupError):
    """Nothing at that address: the page is a 404."""


class Refused(PermissionError):
    """A file the build names lies outside the build (`..`, an absolute path, a symlink out)."""


@dataclass
class Dataset:
    name: str
    units: list[str]
    shards: list[str | None]  # URL of each done unit's shard (None when its path leaves the build)
    audits: list[str | None]
    rows: np.ndarray  # sentences per unit
    tasks: list[dict[str, int]]  # sentences per task, per unit
    failures: list[dict[str, int]]  # failed inputs per reason, per unit
    totals: dict[str, Any]
    layout_counts: list[Counter] | None = None  # (task, layout) → sentences, per unit; read on first use
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: dict[str, int] = field(default_factory=dict)  # unit name → its position
    layout_names: list[str] | None = None
    counts: dict[tuple[str | None, str | None], np.ndarray] = field(default_factory=dict)  # per filter, per unit

    def __post_init__(self) -> None:
        self.index = {u: i for i, u in enumerate(self.units)}


@dataclass
class _Open:
    pf: pq.ParquetFile
    lock: threading.Lock
    starts: np.ndarray  # first row of each row group


class BuildView:
    """One build, as the viewer reads it. Thread-safe: Starlette runs the pages on a thread pool."""

    def __init__(self, out: str, per_page: int = PER_PAGE) -> None:
        self.out = out.rstrip("/") or "/"
        self.per_page = per_page
        self.manifest = read_manifest(self.out)
        if self.manifest is None:
            raise FileNotFoundError(f"{out}: no manifest.json (not a build, or one that never finished a run)")
        table = read_units_table(self.out, _UNIT_COLUMNS)
        if table is None:
            raise ValueError(f"{out}: manifest/units.parquet is missing or unreadable")
        self.table = table
        self.totals = dict(self.manifest.get("totals") or totals(table))
        self.datasets: dict[str, Dataset] = {}
        self.failed_units: list[dict[str, str]] = []
        self._index(table)
        self._lock = threading.Lock()
        self._files: OrderedDict[str, _Open] = OrderedDict()
        self._locations: OrderedDict[str, tuple[str, int, int]] = OrderedDict()  # id → (dataset, unit index, row)
        self._groups: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
        self._outside: list[str] | None = None
        fs, root = fs_and_path(self.out)
        # on a local disk a symlink can lead anywhere: opened files are checked against the real root
        self._local_root = os.path.realpath(root) if "file" in (fs.protocol if isinstance(fs.protocol, tuple)
                                                               else (fs.protocol,)) else None

    # ---- start: the units table ------------------------------------------------------------------
    def _index(self, table: pa.Table) -> None:
        names = table.column("dataset").to_pylist()
        order = list(dict.fromkeys(names))
        status = table.column("status").to_pylist()
        for r, (st, err) in enumerate(zip(status, table.column("error").to_pylist())):
            if st != "done":
                self.failed_units.append({"dataset": names[r], "unit": table.column("unit")[r].as_py(),
                                          "status": st, "error": err or ""})
        for name in order:
            sub = table.filter(pc.equal(table.column("dataset"), name))
            done = sub.filter(pc.equal(sub.column("status"), "done"))
            self.datasets[name] = Dataset(
                name, done.column("unit").to_pylist(),
                [self._inside(p) for p in done.column("shard_path").to_pylist()],
                [self._inside(p) for p in done.column("audit_path").to_pylist()],
                np.asarray(done.column("shard_rows").fill_null(0).to_numpy(), np.int64),
                [json.loads(t or "{}") for t in done.column("tasks").to_pylist()],
                [json.loads(f or "{}") for f in done.column("failures").to_pylist()],
                totals(sub))

    def _inside(self, path: str | None) -> str | None:
        """The URL of a file the units table names, when it stays inside the build (no `..`, no
        absolute path elsewhere); None otherwise. Symlinks are checked when the file is opened."""
        if not path:
            return None
        url = resolve(self.out, path)
        base = self.out.rstrip("/") + "/"
        if "://" in self.out:
            scheme, rest = url.split("://", 1) if "://" in url else ("", url)
            norm = f"{scheme}://{posixpath.normpath(rest)}"
        else:
            norm = posixpath.normpath(url)
        return norm if norm.startswith(base) else None

    def dataset(self, name: str) -> Dataset:
        ds = self.datasets.get(name)
        if ds is None:
            raise NotFound(f"no dataset {name!r} in this build")
        return ds

    # ---- files -----------------------------------------------------------------------------------
    def _open(self, url: str | None) -> _Open:
        if url is None:
            raise Refused("the units table names a file outside the build; it is not read")
        with self._lock:
            hit = self._files.get(url)
            if hit is not None:
                self._files.move_to_end(url)
                return hit
        if self._local_root is not None:
            real = os.path.realpath(fs_and_path(url)[1])
            if not real.startswith(self._local_root + os.sep):
                raise Refused(f"{url} leads outside the build (a symlink?); it is not read")
        try:
            pf = open_parquet(url) if self._local_root is not None else _open_remote(url)
        except (FileNotFoundError, OSError, pa.ArrowInvalid) as err:
            raise NotFound(f"{url}: cannot be read ({type(err).__name__})") from err
        rows = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        opened = _Open(pf, threading.Lock(), np.concatenate([[0], np.cumsum(rows)]).astype(np.int64))
        with self._lock:
            self._files[url] = opened
            while len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)
        return opened

    def _read(self, url: str | None, lo: int, hi: int, columns: list[str]) -> pa.Table:
        """Rows [lo, hi) of a shard: only the row groups that hold them, only `columns`."""
        f = self._open(url)
        first = int(np.searchsorted(f.starts, lo, "right") - 1)
        last = int(np.searchsorted(f.starts, max(hi - 1, lo), "right") - 1)
        groups = [g for g in range(max(first, 0), min(last, f.pf.num_row_groups - 1) + 1)]
        if not groups:
            return pa.table({c: [] for c in columns})
        with f.lock:  # a ParquetFile over a Python file object is not safe across threads
            t = f.pf.read_row_groups(groups, columns=columns, use_threads=False)
        return t.slice(lo - int(f.starts[groups[0]]), hi - lo)

    def _column(self, url: str | None, columns: list[str]) -> pa.Table:
        f = self._open(url)
        with f.lock:
            return f.pf.read(columns=columns, use_threads=False)

    def _remember(self, sentence_id: str, where: tuple[str, int, int]) -> None:
        with self._lock:
            self._locations[sentence_id] = where
            self._locations.move_to_end(sentence_id)
            while len(self._locations) > _LOCATIONS:
                self._locations.popitem(last=False)

    # ---- pages -----------------------------------------------------------------------------------
    def home(self) -> dict[str, Any]:
        t = self.totals
        datasets = [{"name": d.name, **{k: d.totals[k] for k in ("sentences", "images", "inputs", "ok", "failed",
                                                                   "bytes", "units", "units_done")},
                     "failures": d.totals["failures"], "tasks": d.totals["tasks"]} for d in self.datasets.values()]
        return {"out": self.out, "uvd_version": self.manifest.get("uvd_version"),
                "config_hash": self.manifest.get("config_hash"),
                "totals": {k: t.get(k) for k in ("sentences", "images", "inputs", "ok", "failed", "bytes",
                                                 "units", "units_done", "tokens")},
                "shards": int(t.get("units_done", 0)),
                "failures": t.get("failures", {}), "mixture": t.get("tasks", {}),
                "by_dataset": {d["name"]: d["sentences"] for d in datasets},
                "datasets": datasets, "failed_units": self.failed_units[:50],
                "outside_plan": self._outside}

    def check_outside_plan(self) -> list[str]:
        """Units whose stats files are under the build but not in its plan (one listing per dataset).
        Run in the background after start: on a big bucket it is a few LISTs per 1000 units."""
        planned = {(r["dataset"], r["unit"]) for r in self.table.select(["dataset", "unit"]).to_pylist()}
        listing = list_stats(UnitLayout.sentences(self.out),
                             [SimpleNamespace(dataset=d, unit="") for d in self.datasets])
        self._outside = sorted(f"{d}/{u}" for d, u in listing if (d, u) not in planned)
        return self._outside

    def _counts(self, ds: Dataset, task: str | None, layout: str | None) -> np.ndarray:
        """Sentences per unit that pass the filter (kept: a filter is paged through page after page)."""
        if task is None and layout is None:
            return ds.rows
        found = ds.counts.get((task, layout))
        if found is not None:
            return found
        if layout is None:
            found = np.asarray([t.get(task, 0) for t in ds.tasks], np.int64)
        else:
            found = np.asarray([sum(n for (tk, ly), n in c.items() if ly == layout and (task is None or tk == task))
                                for c in self._layout_counts(ds)], np.int64)
        with ds.lock:
            if len(ds.counts) > 64:
                ds.counts.clear()
            ds.counts[(task, layout)] = found
        return found

    def _layout_counts(self, ds: Dataset) -> list[Counter]:
        """(task, layout) counts per unit: the units table does not hold layouts, so a layout filter
        reads those two (dictionary-encoded, tiny) columns of each of the dataset's shards once."""
        with ds.lock:
            if ds.layout_counts is None:
                def count(url: str | None) -> Counter:
                    try:
                        t = self._column(url, ["task", "layout"])
                    except (NotFound, Refused):
                        return Counter()
                    return Counter(zip(t.column("task").to_pylist(), t.column("layout").to_pylist()))
                ds.layout_counts = parallel_map(count, ds.shards)
            return ds.layout_counts

    def layouts(self, ds: Dataset) -> list[str]:
        """The layouts offered by the filter: all of them on a dataset of ≤ 64 units (or once a layout
        filter has read them), else those of its first shard with rows (its builder makes them)."""
        if ds.layout_counts is None and len(ds.units) <= 64:
            self._layout_counts(ds)
        if ds.layout_counts is not None:
            return sorted({ly for c in ds.layout_counts for _, ly in c})
        if ds.layout_names is None:
            first = next((i for i, n in enumerate(ds.rows) if n), None)
            try:
                t = self._read(ds.shards[first], 0, min(int(ds.rows[first]), 256), ["layout"]) if first is not None else None
            except (NotFound, Refused):
                return []
            ds.layout_names = sorted(set(t.column("layout").to_pylist())) if t is not None else []
        return ds.layout_names

    def dataset_page(self, name: str, task: str | None = None, layout: str | None = None,
                     page: int = 0) -> dict[str, Any]:
        ds = self.dataset(name)
        task, layout = task or None, layout or None
        counts = self._counts(ds, task, layout)
        total = int(counts.sum())
        pages = max(1, -(-total // self.per_page))
        if page < 0 or page >= pages:
            raise NotFound(f"{name}: no page {page} (pages 0 to {pages - 1})")
        start, want = page * self.per_page, min(self.per_page, total - page * self.per_page)
        cum = np.concatenate([[0], np.cumsum(counts)])
        u = int(np.searchsorted(cum, start, "right") - 1)
        rows: list[dict[str, Any]] = []
        skip = start - int(cum[u]) if total else 0
        while len(rows) < want and u < len(ds.units):
            if counts[u] > skip:
                rows += self._page_rows(ds, u, skip, want - len(rows), task, layout)
            skip = max(0, skip - int(counts[u]))
            u += 1
        return {"dataset": name, "task": task, "layout": layout, "page": page, "pages": pages,
                "per_page": self.per_page, "total": total, "tasks": ds.totals["tasks"],
                "layouts": self.layouts(ds), "sentences": rows}

    def _page_rows(self, ds: Dataset, u: int, skip: int, n: int, task: str | None,
                   layout: str | None) -> list[dict[str, Any]]:
        url = ds.shards[u]
        if task is None and layout is None:
            t = self._read(url, skip, skip + n, META_COLUMNS)
            at = list(range(skip, skip + t.num_rows))
        else:  # the matching rows of this shard: its task/layout columns, then only the rows shown
            t = self._column(url, ["task", "layout"])
            mask = np.ones(t.num_rows, bool)
            if task is not None:
                mask &= np.asarray(t.column("task").to_pylist(), object) == task
            if layout is not None:
                mask &= np.asarray(t.column("layout").to_pylist(), object) == layout
            at = [int(i) for i in np.flatnonzero(mask)[skip:skip + n]]
            if not at:
                return []
            t = self._read(url, at[0], at[-1] + 1, META_COLUMNS).take([i - at[0] for i in at])
        out = []
        for row, r in zip(at, t.to_pylist()):
            self._remember(r["sentence_id"], (ds.name, u, row))
            out.append({**r, "dataset": ds.name, "unit": ds.units[u], "row": row,
                        "at": f"{ds.name}/{ds.units[u]}"})
        return out

    def locate(self, sentence_id: str, hint: str | None = None) -> tuple[Dataset, int, int]:
        """(dataset, unit index, row in shard) of a sentence: remembered from a page shown, found
        in the unit a link names (`?at=<dataset>/<unit>`), or, failing both, searched shard by shard."""
        if not _ID.match(sentence_id):
            raise NotFound(f"no sentence {sentence_id!r}")
        with self._lock:
            where = self._locations.get(sentence_id)
        if where is not None:
            return self.datasets[where[0]], where[1], where[2]
        candidates: list[tuple[Dataset, int]] = []
        if hint and "/" in hint:
            name, unit = hint.rsplit("/", 1)
            ds = self.datasets.get(name)
            if ds is not None and unit in ds.index:
                candidates.append((ds, ds.index[unit]))
        for ds, u in candidates:
            found = self._find_in(ds, u, sentence_id)
            if found is not None:
                return ds, u, found
        everything = [(ds, u) for ds in self.datasets.values() for u in range(len(ds.units)) if ds.rows[u]]
        for start in range(0, len(everything), 64):  # a batch of shards at a time, stopping when found
            batch = everything[start:start + 64]
            hits = parallel_map(lambda du: self._find_in(du[0], du[1], sentence_id), batch)
            for (ds, u), row in zip(batch, hits):
                if row is not None:
                    return ds, u, row
        raise NotFound(f"no sentence {sentence_id!r} in this build")

    def _find_in(self, ds: Dataset, u: int, sentence_id: str) -> int | None:
        try:
            ids = self._column(ds.shards[u], ["sentence_id"]).column("sentence_id")
        except (NotFound, Refused):
            return None
        hits = np.flatnonzero(pc.equal(ids, sentence_id).to_numpy(zero_copy_only=False))
        if not len(hits):
            return None
        self._remember(sentence_id, (ds.name, u, int(hits[0])))
        return int(hits[0])

    def sentence(self, sentence_id: str, hint: str | None = None) -> dict[str, Any]:
        ds, u, row = self.locate(sentence_id, hint)
        url = ds.shards[u]
        r = self._read(url, row, row + 1, [*META_COLUMNS, "meta"]).to_pylist()[0]
        if r["sentence_id"] != sentence_id:  # the shard changed under a remembered location
            with self._lock:
                self._locations.pop(sentence_id, None)
            raise NotFound(f"sentence {sentence_id!r} moved; reload")
        try:
            meta = json.loads(r["meta"])
        except ValueError:
            meta = {"unparsed": r["meta"]}
        ids = self._read(url, max(row - 1, 0), row + 2, ["sentence_id"]).column("sentence_id").to_pylist()
        prev = ids[0] if row > 0 else None
        nxt = ids[-1] if len(ids) > (2 if row > 0 else 1) else None
        at = f"{ds.name}/{ds.units[u]}"
        for other, k in ((prev, row - 1), (nxt, row + 1)):
            if other:
                self._remember(other, (ds.name, u, k))
        return {**{k: r[k] for k in META_COLUMNS}, "dataset": ds.name, "unit": ds.units[u], "row": row, "at": at,
                "shard": _relative(self.out, url), "meta": meta, "inputs": self._inputs(ds, u, meta),
                "previous": prev, "next": nxt,
                "images": [f"/image/{sentence_id}/{i}?at={at}" for i in range(int(r["num_images"]))]}

    def _inputs(self, ds: Dataset, u: int, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """The input items a sentence came from (from its meta) with their audit rows."""
        ids = meta.get("item_ids") or ([meta["item_id"]] if meta.get("item_id") else [])
        ids = [str(i) for i in ids][:64]
        if not ids:
            return []
        found: dict[str, dict[str, Any]] = {}
        try:
            t = self._column(ds.audits[u], ["item_id", "status", "error"])
            mask = pc.is_in(t.column("item_id"), pa.array(ids))
            found = {r["item_id"]: r for r in t.filter(mask).to_pylist()}
        except (NotFound, Refused):
            pass
        return [found.get(i, {"item_id": i, "status": "?", "error": None}) for i in ids]

    def image(self, sentence_id: str, index: int, hint: str | None = None) -> bytes:
        """An image's encoded bytes, straight from the Parquet row (its row group is kept a while)."""
        ds, u, row = self.locate(sentence_id, hint)
        url = ds.shards[u]
        f = self._open(url)
        g = int(np.searchsorted(f.starts, row, "right") - 1)
        key = (str(url), g)
        with self._lock:
            table = self._groups.get(key)
        if table is None:
            with f.lock:
                table = f.pf.read_row_group(g, columns=["sentence_id", "images"], use_threads=False)
            with self._lock:
                self._groups[key] = table
                while len(self._groups) > _ROW_GROUPS:
                    self._groups.popitem(last=False)
        local = row - int(f.starts[g])
        if local >= table.num_rows or table.column("sentence_id")[local].as_py() != sentence_id:
            raise NotFound(f"sentence {sentence_id!r} is not where it was")
        images = table.column("images")[local].as_py()
        if not 0 <= index < len(images):
            raise NotFound(f"sentence {sentence_id!r} has no image {index}")
        return images[index]

    def failures(self, dataset: str | None = None, reason: str | None = None, page: int = 0,
                 examples: int = 3) -> dict[str, Any]:
        """Failed inputs by reason (the units table), with example rows read from the audit shards."""
        chosen = [self.dataset(dataset)] if dataset else list(self.datasets.values())
        by_reason: Counter[str] = Counter()
        for ds in chosen:
            by_reason.update(ds.totals["failures"])
        reason = reason or None
        result: dict[str, Any] = {"dataset": dataset, "reason": reason, "reasons": dict(by_reason.most_common()),
                                  "datasets": list(self.datasets), "page": page, "per_page": self.per_page}
        if reason is None:
            result["examples"] = {r: self._failed_rows(chosen, r, 0, examples) for r in by_reason}
            result["pages"] = 1
            return result
        if reason not in by_reason:
            raise NotFound(f"no failures of reason {reason!r}" + (f" in {dataset}" if dataset else ""))
        pages = max(1, -(-by_reason[reason] // self.per_page))
        if not 0 <= page < pages:
            raise NotFound(f"no page {page} (pages 0 to {pages - 1})")
        result["pages"] = pages
        result["examples"] = {reason: self._failed_rows(chosen, reason, page * self.per_page, self.per_page)}
        return result

    def _failed_rows(self, chosen: list[Dataset], reason: str, skip: int, n: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for ds, u in _units_with(chosen, lambda d, i: d.failures[i].get(reason, 0)):
            have = ds.failures[u].get(reason, 0)
            if skip >= have:
                skip -= have
                continue
            try:
                t = self._column(ds.audits[u], ["item_id", "status", "reason", "error"])
            except (NotFound, Refused) as err:
                rows.append({"dataset": ds.name, "unit": ds.units[u], "item_id": "?", "reason": reason,
                             "error": f"audit unreadable: {err}"})
                skip = 0
                continue
            t = t.filter(pc.equal(t.column("reason").cast(pa.string()), reason))
            for r in t.slice(skip, n - len(rows)).to_pylist():
                rows.append({"dataset": ds.name, "unit": ds.units[u], "item_id": r["item_id"],
                             "reason": reason, "error": r["error"]})
            skip = 0
            if len(rows) >= n:
                break
        return rows


def _open_remote(url: str) -> pq.ParquetFile:
    """A Parquet file on an object store, kept open with a small read-ahead: s3fs's default block
    (50 MiB) would be held by every open file, and the viewer keeps dozens open."""
    fs, path = fs_and_path(url)
    return pq.ParquetFile(fs.open(path, "rb", block_size=1 << 20, cache_type="readahead"), pre_buffer=False)


def _units_with(chosen: list[Dataset], count: Callable[[Dataset, int], int]) -> Iterator[tuple[Dataset, int]]:
    for ds in chosen:
        for u in range(len(ds.units)):
            if count(ds, u):
                yield ds, u


def _relative(out: str, url: str | None) -> str:
    base = out.rstrip("/") + "/"
    return url[len(base):] if url and url.startswith(base) else str(url)
