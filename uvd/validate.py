"""Check a build output against its manifest (on Ray, or a sample): files, sha256, schema, images, inputs = ok + failed."""
from __future__ import annotations

import hashlib
import random
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uvd import codec, dedup
from uvd.layout import UnitLayout
from uvd.manifest import read_manifest, read_units_table, resolve, shards
from uvd.schema import AUDIT_SCHEMA, SENTENCE_SCHEMA
from uvd.shards import iter_rows, open_parquet, read_table
from uvd.storage import exists, join, list_names, read_json, sha256_of


def _schema_problem(url: str, expected: Any) -> str | None:
    got = open_parquet(url).schema_arrow.remove_metadata()
    if not got.equals(expected.remove_metadata()):
        return f"{url}: schema differs from v1: {got}"
    return None


def _check_sentences(url: str, size: int, seen_ids: dict[str, str], problems: list[str], decode: bool) -> int:
    rows = 0
    for row in iter_rows(url):
        rows += 1
        sid = row["sentence_id"]
        if sid in seen_ids:
            problems.append(f"{url}: duplicate sentence_id {sid} (also in {seen_ids[sid]})")
        seen_ids[sid] = url
        if row["num_images"] != len(row["images"]) or not row["images"]:
            problems.append(f"{url}: sentence {sid}: num_images {row['num_images']} != {len(row['images'])}")
        if decode:
            for i, data in enumerate(row["images"]):
                try:
                    shape = codec.decode(data).shape
                except Exception as err:
                    problems.append(f"{url}: sentence {sid} image {i} does not decode: {err}")
                    continue
                if shape != (size, size, 3):
                    problems.append(f"{url}: sentence {sid} image {i} has shape {shape}, expected {size}x{size}x3")
    return rows


def _check_shard(url: str, kind: str, size: int, seen_ids: dict[str, str], problems: list[str],
                 decode: bool) -> int | None:
    expected = SENTENCE_SCHEMA if kind == "sentences" else AUDIT_SCHEMA
    if (prob := _schema_problem(url, expected)) is not None:
        problems.append(prob)
        return None
    if kind == "sentences":
        return _check_sentences(url, size, seen_ids, problems, decode)
    audit = read_table(url).to_pylist()
    bad = [r for r in audit if r["status"] not in ("ok", "failed") or (r["status"] == "failed") != bool(r["error"])]
    if bad:
        problems.append(f"{url}: {len(bad)} audit rows neither ok nor failed-with-reason")
    return len(audit)


def _id_hash(sentence_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sentence_id.encode(), digest_size=8).digest(), "little")


def check_batch(out: str, shards: list[dict[str, Any]], size: int, decode: bool) -> tuple[list[str], list[Any]]:
    """Check a batch of shards against their table rows: (problems, per sentence shard its id hashes).

    Sentence ids come back as 64-bit hashes so the driver can find duplicates across batches
    with 8 bytes per sentence.
    """
    problems: list[str] = []
    ids: list[tuple[str, np.ndarray]] = []
    for shard in shards:
        url = resolve(out, shard["path"])
        if not exists(url):
            problems.append(f"{shard['path']}: listed in the manifest but missing")
            continue
        sha, nbytes = sha256_of(url)
        if (sha, nbytes) != (shard["sha256"], shard["bytes"]):
            problems.append(f"{shard['path']}: sha256/bytes differ from the manifest")
        seen: dict[str, str] = {}
        try:
            rows = _check_shard(url, shard["kind"], size, seen, problems, decode)
        except Exception as err:  # a damaged file is a finding, not a crash of the validator
            problems.append(f"{shard['path']}: unreadable: {type(err).__name__}: {err}")
            continue
        if shard["kind"] == "sentences":
            ids.append((shard["path"], np.array([_id_hash(s) for s in seen], dtype=np.uint64)))
        if rows is not None and rows != shard["rows"]:
            problems.append(f"{shard['path']}: {rows} rows, manifest says {shard['rows']}")
        if rows is not None and shard["kind"] == "audit":
            problems.extend(_planned_problem(out, shard, rows))
    return problems, ids


def _planned_problem(out: str, shard: dict[str, Any], rows: int) -> list[str]:
    """The audit against the count the source planned for the unit (its stats' `planned_inputs`):
    inputs = ok + failed counts audit rows, so it cannot see an input that never got one."""
    try:
        planned = read_json(UnitLayout.sentences(out).stats(shard["dataset"], shard["unit"])).get("planned_inputs")
    except Exception:  # a stats file is the commit protocol's to check; no count, nothing to hold the audit to
        return []
    if isinstance(planned, int) and planned != rows:
        return [f"unit {shard['dataset']}/{shard['unit']}: {rows} audit rows, but the source planned {planned} "
                f"inputs (an input without a row, or a row of no input)"]
    return []


def _duplicates(ids: list[tuple[str, np.ndarray]]) -> list[str]:
    if not ids:
        return []
    hashes = np.concatenate([h for _, h in ids])
    values, counts = np.unique(hashes, return_counts=True)
    dup = set(values[counts > 1].tolist())
    problems = []
    for h in sorted(dup):
        where = [path for path, hs in ids if h in set(hs.tolist())]
        problems.append(f"duplicate sentence_id (hash {h:016x}) in {', '.join(where)}")
    return problems


def _run_batches(out: str, table: pa.Table, rows: list[int], per_task: int, size: int, decode: bool,
                 use_ray: bool) -> Iterator[tuple[list[str], list[Any]]]:
    """check_batch over the shards of the table rows `rows`, `per_task` units at a time (rows become
    Python dicts one batch at a time, so a table of 10^5 units is never all Python)."""
    batches = (shards(table.take(rows[i:i + per_task]).to_pylist()) for i in range(0, len(rows), per_task))
    if not use_ray or len(rows) <= per_task:
        yield from (check_batch(out, b, size, decode) for b in batches)
        return
    import ray

    from uvd.runner import init_ray

    init_ray(0)
    task = ray.remote(num_cpus=1)(check_batch)
    limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    in_flight: list[Any] = []
    for b in batches:  # a bounded number of tasks in flight, results in order
        in_flight.append(task.remote(out, b, size, decode))
        if len(in_flight) >= limit:
            yield ray.get(in_flight.pop(0))
    yield from ray.get(in_flight)


def validate(out: str, decode_images: bool = True, sample: int | None = None, use_ray: bool = False,
             batch: int = 32, warnings: list[str] | None = None) -> list[str]:
    """Problems of a finished build: unit status, every shard against its table row, listing leftovers.

    Files of units outside the plan (not in the units table at all: an earlier plan's leftovers)
    are no problem and never read as data: each such unit is appended to `warnings` when given.

    `sample` checks the shards of that many units picked at random (seeded), for a quick pass over
    a huge build; `use_ray` spreads the shard checks over Ray tasks of `batch` units each.
    """
    out = out.rstrip("/")
    problems: list[str] = []
    manifest = read_manifest(out)
    if manifest is None:
        return [f"{out}: no manifest.json (the build has not finished)"]
    table = read_units_table(out)
    n = table.num_rows if table is not None else 0
    if n != manifest["totals"]["units"]:
        problems.append(f"{out}: units table has {n} units, manifest.json says {manifest['totals']['units']}")
    if table is None:
        return problems
    size = manifest["config"]["image"]["size"]
    not_done = table.filter(pc.not_equal(table.column("status"), "done"))
    for u in not_done.select(["dataset", "unit", "error"]).to_pylist():
        problems.append(f"unit {u['dataset']}/{u['unit']} not done: {u['error']}")
    done = table.filter(pc.equal(table.column("status"), "done"))
    unbalanced = done.filter(pc.not_equal(done.column("inputs"), pc.add(done.column("ok"), done.column("failed"))))
    for u in unbalanced.to_pylist():
        problems.append(f"unit {u['dataset']}/{u['unit']}: inputs {u['inputs']} != ok + failed")
    rows = list(range(done.num_rows))
    if sample is not None and sample < len(rows):
        rows = sorted(random.Random(0).sample(rows, sample))
    ids = []
    for probs, batch_ids in _run_batches(out, done, rows, batch, size, decode_images, use_ray):
        problems.extend(probs)
        ids.extend(batch_ids)
    problems.extend(_duplicates(ids))
    if sample is None:  # the content dedup table names sentences of this build (a sample has not seen them all)
        seen = set(np.concatenate([h for _, h in ids]).tolist()) if ids else set()
        problems += dedup.check(out, lambda sid: _id_hash(sid) in seen)
    listed_paths = set(done.column("shard_path").to_pylist()) | set(done.column("audit_path").to_pylist())
    planned = {f"{d}/{u}" for d, u in zip(table.column("dataset").to_pylist(), table.column("unit").to_pylist())}
    outside: set[str] = set()
    for kind in ("sentences", "audit"):
        for rel in list_names(join(out, kind)):
            name = f"{kind}/{rel}"
            unit = _unit_of(rel)
            if ".tmp-" in rel:
                problems.append(f"{name}: leftover temporary file")
            elif unit is not None and unit not in planned:
                outside.add(unit)
            elif rel.endswith(".parquet") and name not in listed_paths:
                problems.append(f"{name}: shard not in the manifest (uncommitted)")
    if warnings is not None:
        warnings.extend(f"unit {u} is outside the plan (files on disk, not counted; `uvd build CONFIG --prune` "
                        "removes them)" for u in sorted(outside))
    return problems


def _unit_of(rel: str) -> str | None:
    """"<dataset>/<unit>" of a shard, audit or stats file path under sentences/ or audit/."""
    ds, _, name = rel.rpartition("/")
    for suffix in (".stats.json", ".parquet"):
        if ds and name.startswith("part-") and name.endswith(suffix):
            return f"{ds}/{name[len('part-'):-len(suffix)]}"
    return None
