"""Build-wide deduplication: a hash-partitioned "first occurrence wins" pass, its persisted form, and the dedup table.

`first_wins` is the one shuffle every pass uses. Map tasks turn their inputs into
(key, order, ident) triples and split them by a stable hash of the key into partitions;
one reduce task per partition sorts its triples and keeps, for every key, the one with the
smallest `order`. The result (the dropped triples, each with the ident it duplicates) is
sorted by order, so it depends neither on the number of workers nor on which task ran first.
It runs on Ray when Ray is initialised, else in-process (same code, same answer).

`first_wins_stored` is the same pass against an index kept in the output (one Parquet file
per partition under `<out>/dedup/…`): every triple seen so far, with its `owner` (the unit it
came from, in a form whose string order is plan order). A rerun hands in only the triples of
new or rebuilt units and the owners to forget; each reduce task merges them into its
partition and decides again. Same triples, same answer: the result equals a one-shot pass.

The dedup table `<out>/dedup/content.parquet` (kept, dropped sentence ids and the sha256
they share) records exact content duplicates found across the committed units of the plan
after download, without rewriting shards; `dropped_ids(out)` is what validate, tokenizing
and training consult. Its index (`<out>/dedup/content/`) is updated from the shards of the
units committed since it was written, so a rerun with nothing new reads no shard.
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from uvd import faults
from uvd.layout import UnitLayout, list_stats
from uvd.shards import open_parquet
from uvd.storage import exists, fs_and_path, join, write_bytes

Triple = tuple[str, tuple, str]  # (key, order, ident): order decides which occurrence is kept
KeysOf = Callable[[Any], Iterable[Triple]]

CONTENT_TABLE = "dedup/content.parquet"
DEDUP_SCHEMA = pa.schema([("kept", pa.string()), ("dropped", pa.string()), ("sha256", pa.string())])


def partition_of(key: str, partitions: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % partitions


def _map(keys_of: KeysOf, inputs: list[Any], partitions: int) -> list[list[Triple]]:
    buckets: list[list[Triple]] = [[] for _ in range(partitions)]
    for item in inputs:
        for key, order, ident in keys_of(item):
            buckets[partition_of(key, partitions)].append((key, order, ident))
    return buckets


def _map_remote(keys_of: KeysOf, inputs: list[Any], partitions: int) -> Any:
    buckets = _map(keys_of, inputs, partitions)
    return tuple(buckets) if partitions > 1 else buckets[0]


Dropped = tuple[tuple, str, str, str]  # (order, dropped ident, kept ident, key)


def _reduce(*buckets: list[Triple]) -> list[Dropped]:
    """(order, dropped ident, kept ident, key) for every triple whose key an earlier one holds."""
    dropped = []
    last, kept = None, ""
    for key, order, ident in sorted(t for b in buckets for t in b):
        if key == last:
            dropped.append((order, ident, kept, key))
        else:
            last, kept = key, ident
    return dropped


def first_wins(inputs: list[Any], keys_of: KeysOf, partitions: int = 16,
               map_tasks: int | None = None) -> list[Dropped]:
    """Every (order, ident, kept ident, key) that is not the first of its key, sorted by order.

    `partitions` bounds a reduce task's memory (size it by the number of keys: a few million
    each); the answer does not depend on it nor on `map_tasks`."""
    map_tasks = map_tasks or max(64, -(-len(inputs) // 1000))
    groups = [inputs[i::map_tasks] for i in range(min(map_tasks, len(inputs)))]
    try:
        import ray

        on_ray = ray.is_initialized()
    except ImportError:
        on_ray = False
    if not on_ray or not groups:
        parts = [_map(keys_of, g, partitions) for g in groups]
        results = [_reduce(*(m[p] for m in parts)) for p in range(partitions)]
    else:
        mapper = ray.remote(num_returns=partitions)(_map_remote)
        reducer = ray.remote(_reduce)
        maps = [mapper.remote(keys_of, g, partitions) for g in groups]
        maps = [m if partitions > 1 else [m] for m in maps]
        results = ray.get([reducer.remote(*(m[p] for m in maps)) for p in range(partitions)])
    return sorted(d for r in results for d in r)


# ---- the persisted form: an index of every triple seen, hash-partitioned ----

INDEX_SCHEMA = pa.schema([("key", pa.string()), ("owner", pa.string()), ("row", pa.int64()), ("ident", pa.string())])
INDEX_META = "index.json"


def unit_rank(unit: str) -> str:
    """A unit name as an owner whose string order is plan order (unit 100000 after 99999)."""
    return f"{len(unit):02d}:{unit}"


def write_parquet(url: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes(url, sink.getvalue().to_pybytes())


def write_partition(url: str, table: pa.Table) -> None:
    """A partition of an index: written, or removed when empty (so that how the index got to its
    contents, at once or step by step, leaves the same files)."""
    if table.num_rows:
        write_parquet(url, table)
    elif exists(url):
        fs, path = fs_and_path(url)
        fs.rm(path)


def read_parquet(url: str, columns: list[str] | None = None) -> pa.Table | None:
    """The table at `url`, or None when there is none."""
    if not exists(url):
        return None
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def index_partitions(index: str, wanted: int) -> int:
    """The partition count of the index at `index`: fixed when it is created (from `wanted`)."""
    url = join(index, INDEX_META)
    if exists(url):
        fs, path = fs_and_path(url)
        with fs.open(path, "rb") as f:
            return int(json.load(f)["partitions"])
    write_bytes(url, json.dumps({"partitions": wanted}).encode())
    return wanted


def _partition_url(index: str, p: int) -> str:
    return join(index, f"part-{p:05d}.parquet")


def _reduce_stored(url: str, forget: frozenset[str], *buckets: list[Triple]) -> list[Dropped]:
    """One partition: its stored triples (but those of `forget`'s owners) and the new ones; the
    merged set is stored back and decided as `_reduce` does."""
    new = [t for b in buckets for t in b]
    table = read_parquet(url)
    stored: list[Triple] = []
    removed = False
    if table is not None:
        for key, owner, row, ident in zip(*(table.column(c).to_pylist() for c in INDEX_SCHEMA.names)):
            if owner in forget:
                removed = True
            else:
                stored.append((key, (owner, row), ident))
    triples = sorted(stored + new)
    if new or removed:
        write_partition(url, pa.table({"key": [t[0] for t in triples], "owner": [t[1][0] for t in triples],
                                     "row": [t[1][1] for t in triples], "ident": [t[2] for t in triples]},
                                    schema=INDEX_SCHEMA))
    return _reduce(triples)


def first_wins_stored(index: str, inputs: list[Any], keys_of: KeysOf, forget: Iterable[str] = (),
                      partitions: int = 16, map_tasks: int | None = None) -> list[Dropped]:
    """`first_wins` over the triples of `inputs` and those stored in `index`, sorted by order.

    Each triple's order is (owner, row). Stored triples of an owner in `forget` (a unit rebuilt,
    or gone from the plan, or the owners of `inputs` themselves, which a killed run may have
    stored already) are removed first. The merged triples are stored back. `partitions` is used
    when the index is created; an existing index keeps its own count.
    """
    partitions = index_partitions(index, partitions)
    forget = frozenset(forget)
    map_tasks = map_tasks or max(64, -(-len(inputs) // 1000))
    groups = [inputs[i::map_tasks] for i in range(min(map_tasks, len(inputs)))]
    urls = [_partition_url(index, p) for p in range(partitions)]
    try:
        import ray

        on_ray = ray.is_initialized()
    except ImportError:
        on_ray = False
    if not on_ray:
        parts = [_map(keys_of, g, partitions) for g in groups]
        results = [_reduce_stored(urls[p], forget, *(m[p] for m in parts)) for p in range(partitions)]
    else:
        mapper = ray.remote(num_returns=partitions)(_map_remote)
        reducer = ray.remote(_reduce_stored)
        maps = [mapper.remote(keys_of, g, partitions) for g in groups]
        maps = [m if partitions > 1 else [m] for m in maps]
        results = ray.get([reducer.remote(urls[p], forget, *(m[p] for m in maps)) for p in range(partitions)])
    return sorted(d for r in results for d in r)


def read_owner_table(url: str, value: str) -> dict[str, str]:
    """owner → `value` column of a small (owner, value) Parquet table; {} when there is none."""
    table = read_parquet(url, ["owner", value])
    return {} if table is None else dict(zip(table.column("owner").to_pylist(), table.column(value).to_pylist()))


def write_owner_table(url: str, value: str, rows: dict[str, str]) -> None:
    owners = sorted(rows)
    write_parquet(url, pa.table({"owner": owners, value: [rows[o] for o in owners]}))


# ---- content duplicates after download ----

CONTENT_INDEX = "dedup/content"


def content_owner(dataset: str, unit: str) -> str:
    return f"{dataset}/{unit_rank(unit)}"


def _content_keys(item: tuple[str, str]) -> Iterable[Triple]:
    """(sha256 of the source bytes, (owner, row), sentence id) for rows whose meta records one."""
    owner, url = item
    with open_parquet(url) as pf:
        table = pf.read(columns=["sentence_id", "meta"])
    for row, (sid, meta) in enumerate(zip(table.column("sentence_id").to_pylist(), table.column("meta").to_pylist())):
        if meta and '"sha256"' in meta:
            sha = json.loads(meta).get("sha256")
            if sha:
                yield sha, (owner, row), sid


def committed_shards(out: str, units: Sequence[Any]) -> dict[str, tuple[str, str]]:
    """Owner → (sentence shard URL, version of its stats file) of those of `units` (the plan's,
    with `.dataset` and `.unit`) that have a stats file: one listing per dataset. Files of units
    outside `units` are never looked at."""
    layout = UnitLayout.sentences(out)
    listed = list_stats(layout, units)
    found = {}
    for u in units:
        info = listed.get((u.dataset, u.unit))
        if info is not None:
            found[content_owner(u.dataset, u.unit)] = (layout.shard(u.dataset, u.unit), f"{info.size}:{info.version}")
    return found


def write_content_table(out: str, units: Sequence[Any]) -> int:
    """Find exact content duplicates across the committed shards of `units` (the plan's units of the
    datasets whose source records content hashes, committed with the current recipe) and write the
    dedup table (an empty table when there are none). Returns the number of dropped sentences.

    Only shards committed since the last table are read (the index in `<out>/dedup/content/`
    remembers the stats-file version of every shard it holds); units no longer committed or no
    longer planned are forgotten. Nothing changed: the table is kept and no shard is read."""
    out = out.rstrip("/")
    index = join(out, CONTENT_INDEX)
    units_url = join(index, "units.parquet")
    now = committed_shards(out, units)
    before = read_owner_table(units_url, "version")
    changed = {o for o, (_, v) in now.items() if before.get(o) != v}
    forget = {o for o in before if o not in now} | changed
    if not forget and exists(join(out, CONTENT_TABLE)):
        return len(duplicates_of(out))
    dropped = first_wins_stored(index, [(o, now[o][0]) for o in sorted(changed)], _content_keys, forget,
                                partitions=max(16, -(-len(now) // 1000)))
    dropped = [d for d in dropped if d[1] != d[2]]  # one sentence twice is no duplicate of itself
    rows = {"kept": [d[2] for d in dropped], "dropped": [d[1] for d in dropped], "sha256": [d[3] for d in dropped]}
    table = pa.table(rows, schema=DEDUP_SCHEMA)
    faults.maybe_die("during_dedup")
    write_parquet(join(out, CONTENT_TABLE), table)
    faults.maybe_die("during_dedup")
    write_owner_table(units_url, "version", {o: v for o, (_, v) in now.items()})  # last: what the index holds
    _table.cache_clear()
    return len(dropped)


# ---- readers ----

@functools.lru_cache(maxsize=8)
def _table(out: str) -> dict[str, str]:
    url = join(out.rstrip("/"), CONTENT_TABLE)
    if not out or not exists(url):
        return {}
    t = open_parquet(url).read(columns=["kept", "dropped"], use_threads=False)  # by path when local
    return dict(zip(t.column("dropped").to_pylist(), t.column("kept").to_pylist()))


def duplicates_of(out: str) -> dict[str, str]:
    """Dropped sentence id → the kept sentence id with the same content, from <out>/dedup."""
    return _table(out.rstrip("/"))


def dropped_ids(out: str) -> set[str]:
    """Sentence ids a consumer of the build at `out` must skip (exact duplicates of kept ones)."""
    return set(_table(out.rstrip("/")))


def build_root(sentence_shard_url: str) -> str:
    """<out> of `<out>/sentences/<dataset>/part-<unit>.parquet` ("" for anything else)."""
    parts = sentence_shard_url.rstrip("/").rsplit("/", 3)
    return parts[0] if len(parts) == 4 and parts[1] == "sentences" else ""


def check(out: str, is_sentence: Callable[[str], bool]) -> list[str]:
    """Problems with the dedup table: every dropped and every kept id must be a sentence of the build."""
    table = duplicates_of(out)
    if not table:
        return []
    problems = [f"{CONTENT_TABLE}: dropped id {d} is no sentence of the build" for d in table if not is_sentence(d)]
    problems += [f"{CONTENT_TABLE}: kept id {k} is no sentence of the build"
                 for k in sorted(set(table.values())) if not is_sentence(k)]
    problems += [f"{CONTENT_TABLE}: kept id {k} is itself dropped" for k in sorted(set(table.values())) if k in table]
    return problems
