"""Run one work unit: source → builder → sentence shard + audit, then the stats file (commit marker).

This is what a Ray task executes; it is also callable in-process (tests, `uvd build --no-ray`).
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from uvd import registry
from uvd.api import Builder, BuildContext, Source
from uvd.audit import AuditLog
from uvd.errors import reason_of
from uvd.config import BuildConfig, DatasetConfig, parse_model
from uvd.layout import audit_shard, relative, sentence_shard, stats_file
from uvd.records import Failed, VisualSentence
from uvd.seeding import stable_hash
from uvd.shards import sentence_row, sentence_writer
from uvd.storage import remove_stale_temps, write_json


def context(cfg: BuildConfig, ds: DatasetConfig) -> BuildContext:
    return BuildContext(dataset=ds.key, seed=cfg.seed, image=cfg.image, max_images=cfg.max_images_per_sentence)


def make_source(cfg: BuildConfig, ds: DatasetConfig) -> Source:
    cls = registry.lookup("source", ds.source)
    return cls(parse_model(cls.Options, ds.source_args, f"datasets[{ds.key}].source_args"), context(cfg, ds))


def make_builder(cfg: BuildConfig, ds: DatasetConfig) -> Builder:
    cls = registry.lookup("builder", ds.builder)
    return cls(parse_model(cls.Options, ds.builder_args, f"datasets[{ds.key}].builder_args"), context(cfg, ds))


def dataset_hash(cfg: BuildConfig, ds: DatasetConfig) -> str:
    """What shapes one dataset's shards: a unit is done only if it was built with this hash."""
    return stable_hash(cfg.seed, cfg.image.model_dump(), cfg.max_images_per_sentence, ds.model_dump(mode="json"))


def payload_hash(payload: dict[str, Any]) -> str:
    return stable_hash(payload)


def run_unit(cfg: BuildConfig, dataset: str, unit: str, payload: dict[str, Any], out: str) -> dict[str, Any]:
    """Build one unit and commit it; returns its stats (also written as the commit marker)."""
    t0 = time.perf_counter()
    ds = cfg.dataset(dataset)
    shard_url = sentence_shard(out, ds.key, unit)
    audit_url = audit_shard(out, ds.key, unit)
    for url in (shard_url, audit_url, stats_file(shard_url)):
        remove_stale_temps(url)
    source, builder = make_source(cfg, ds), make_builder(cfg, ds)
    dhash = dataset_hash(cfg, ds)
    file_meta = {"config_hash": cfg.hash(), "dataset_hash": dhash, "dataset": ds.key, "unit": unit}
    audit = AuditLog()
    steps: Counter[str] = Counter()
    by_task: Counter[str] = Counter()
    seconds = Counter[str]()

    writer = sentence_writer(shard_url, file_meta, cfg.row_group_bytes)
    images = 0
    seen_ids: set[str] = set()

    def emit(results: Any) -> None:
        nonlocal images
        for r in results:
            if isinstance(r, Failed):
                audit.fail(r)
                continue
            assert isinstance(r, VisualSentence)
            if len(r.images) > cfg.max_images_per_sentence:
                raise ValueError(f"builder {ds.builder} made {len(r.images)} images > max_images_per_sentence")
            if r.sentence_id in seen_ids:  # a builder bug, not bad input: stop the unit loudly
                raise ValueError(f"duplicate sentence_id {r.sentence_id} in unit {unit}")
            seen_ids.add(r.sentence_id)
            t = time.perf_counter()
            row, nbytes = sentence_row(r, cfg.image.jpeg_quality)
            writer.add(row, nbytes)
            seconds["encode_write"] += time.perf_counter() - t
            audit.used(r.item_ids)
            images += len(r.images)
            by_task[r.task] += 1

    try:
        t = time.perf_counter()
        for item in source.read(payload):
            seconds["read"] += time.perf_counter() - t
            if isinstance(item, Failed):
                audit.fail(item)
                steps["read_failed"] += 1
            else:
                audit.seen(item.item_id)
                steps["read_ok"] += 1
                t = time.perf_counter()
                try:
                    results = list(builder.process(item))
                except Exception as err:  # bad input ends in the audit; the unit goes on
                    results = [Failed(item.item_id, reason_of(err))]
                seconds["build"] += time.perf_counter() - t
                emit(results)
            t = time.perf_counter()
        emit(list(builder.finish()))
        seconds["build"] += time.perf_counter() - t
        info = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        source.close()

    audit_info = audit.write(audit_url, file_meta)
    counts = audit.counts()
    stats = {
        "dataset": ds.key,
        "unit": unit,
        "source": ds.source,
        "builder": ds.builder,
        "dataset_hash": dhash,
        "payload_hash": payload_hash(payload),
        **counts,
        "sentences": info.rows,
        "images": images,
        "tasks": dict(sorted(by_task.items())),
        "steps": dict(steps),
        # Paths relative to the output, so a finished build can be moved or copied as a whole.
        "shard": {"path": relative(out, shard_url), "rows": info.rows, "bytes": info.bytes, "sha256": info.sha256},
        "audit": {"path": relative(out, audit_url), "rows": counts["inputs"], "bytes": audit_info.bytes,
                  "sha256": audit_info.sha256},
        "seconds": {k: round(v, 4) for k, v in {**seconds, "total": time.perf_counter() - t0}.items()},
    }
    write_json(stats_file(shard_url), stats)  # last: from now on the unit counts as done
    return stats
