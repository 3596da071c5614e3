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
from uvd.config import BuildConfig, DatasetConfig, parse_model
from uvd.engine import commit_unit
from uvd.errors import reason_of
from uvd.layout import UnitLayout
from uvd.records import Failed, VisualSentence
from uvd.seeding import stable_hash
from uvd.shards import ShardWriter, sentence_row, sentence_writer


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


def recipe(dhash: str, payload: dict[str, Any]) -> dict[str, str]:
    """What a committed unit must have been built with to count as done (fields of its stats)."""
    return {"dataset_hash": dhash, "payload_hash": payload_hash(payload)}


def run_unit(cfg: BuildConfig, dataset: str, unit: str, payload: dict[str, Any], out: str) -> dict[str, Any]:
    """Build one unit and commit it; returns its stats (also written as the commit marker)."""
    ds = cfg.dataset(dataset)
    dhash = dataset_hash(cfg, ds)
    file_meta = {"config_hash": cfg.hash(), "dataset_hash": dhash, "dataset": ds.key, "unit": unit}
    head = {"dataset": ds.key, "unit": unit, "source": ds.source, "builder": ds.builder, **recipe(dhash, payload)}

    def fill(writer: ShardWriter, audit: AuditLog, seconds: Counter[str]) -> dict[str, Any]:
        source, builder = make_source(cfg, ds), make_builder(cfg, ds)
        try:
            return _build(cfg, ds, unit, payload, source, builder, writer, audit, seconds)
        finally:
            source.close()

    return commit_unit(UnitLayout.sentences(out), ds.key, unit,
                       lambda url: sentence_writer(url, file_meta, cfg.row_group_bytes), fill, file_meta, head)


def _build(cfg: BuildConfig, ds: DatasetConfig, unit: str, payload: dict[str, Any], source: Source,
           builder: Builder, writer: ShardWriter, audit: AuditLog, seconds: Counter[str]) -> dict[str, Any]:
    steps: Counter[str] = Counter()
    by_task: Counter[str] = Counter()
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
    return {"images": images, "tasks": dict(sorted(by_task.items())), "steps": dict(steps)}
