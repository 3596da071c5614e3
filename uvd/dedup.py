"""Build-wide deduplication: a hash-partitioned "first occurrence wins" pass, and the dedup table.

`first_wins` is the one shuffle both passes use. Map tasks turn their inputs into
(key, order, ident) triples and split them by a stable hash of the key into partitions;
one reduce task per partition sorts its triples and keeps, for every key, the one with the
smallest `order`. The result (the dropped triples, each with the ident it duplicates) is
sorted by order, so it depends neither on the number of workers nor on which task ran first.
It runs on Ray when Ray is initialised, else in-process (same code, same answer).

The dedup table `<out>/dedup/content.parquet` (kept, dropped sentence ids and the sha256
they share) records exact content duplicates found across units after download, without
rewriting shards; `dropped_ids(out)` is what validate, tokenizing and training consult.
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from uvd.shards import open_parquet
from uvd.storage import exists, fs_and_path, glob, join, write_bytes

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


# ---- content duplicates after download ----

def _content_keys(item: tuple[int, str]) -> Iterable[Triple]:
    """(sha256 of the source bytes, (shard, row), sentence id) for rows whose meta records one."""
    index, url = item
    with open_parquet(url) as pf:
        table = pf.read(columns=["sentence_id", "meta"])
    for row, (sid, meta) in enumerate(zip(table.column("sentence_id").to_pylist(), table.column("meta").to_pylist())):
        if meta and '"sha256"' in meta:
            sha = json.loads(meta).get("sha256")
            if sha:
                yield sha, (index, row), sid


def committed_shards(out: str, datasets: list[str]) -> list[str]:
    """Committed sentence shards (with their stats file) of `datasets`, sorted by dataset and unit:
    one listing per dataset."""
    return [s[: -len(".stats.json")] + ".parquet"
            for ds in sorted(datasets) for s in glob(out, f"sentences/{ds}/part-*.stats.json")]


def write_content_table(out: str, datasets: list[str], changed: bool = True) -> int:
    """Find exact content duplicates across the committed shards of `datasets` (those whose source
    records content hashes) and write the dedup table (an empty table when there are none).
    Returns the number of dropped sentences. `changed=False` (nothing of those datasets was built
    this run) keeps an existing table instead of rereading every shard."""
    if not changed and exists(join(out, CONTENT_TABLE)):
        return len(duplicates_of(out))
    shards = committed_shards(out, datasets)
    dropped = first_wins(list(enumerate(shards)), _content_keys, partitions=max(16, -(-len(shards) // 1000)))
    rows = {"kept": [d[2] for d in dropped], "dropped": [d[1] for d in dropped], "sha256": [d[3] for d in dropped]}
    table = pa.table(rows, schema=DEDUP_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes(join(out, CONTENT_TABLE), sink.getvalue().to_pybytes())
    _table.cache_clear()
    return len(dropped)


# ---- readers ----

@functools.lru_cache(maxsize=8)
def _table(out: str) -> dict[str, str]:
    url = join(out.rstrip("/"), CONTENT_TABLE)
    if not out or not exists(url):
        return {}
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        t = pq.read_table(f, columns=["kept", "dropped"])
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
