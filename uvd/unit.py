"""Run one work unit: source → builder → sentence shard + audit, then the stats file (commit marker).

This is what a Ray task executes; it is also callable in-process (tests, `uvd build --no-ray`).
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from uvd import regroup, registry
from uvd.api import Builder, BuildContext, Source
from uvd.audit import AuditLog
from uvd.config import BuildConfig, DatasetConfig, parse_model, recipe_dump
from uvd.engine import commit_unit
from uvd.errors import ConfigError, reason_of
from uvd.layout import UnitLayout
from uvd.records import Failed, VisualSentence
from uvd.schema import SCHEMA_VERSION
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


# A payload key a source fills in after planning, for the units about to be built only (LAION's
# build-wide duplicates, `prepare_units`): derived from the inputs the payload already names, so
# not part of the recipe (a committed unit is not rebuilt because it was planned without it).
DERIVED = "derived"


def dataset_recipe(cfg: BuildConfig, ds: DatasetConfig) -> dict[str, Any]:
    """What shapes one dataset's shards: the config without its operational keys (uvd.config.Strict)
    and without what each unit's payload names itself; the source's and builder's options parsed,
    so their own operational keys and defaults are seen."""
    build = recipe_dump(cfg)
    build.pop("datasets")
    dataset = recipe_dump(ds)
    dataset["source_args"] = recipe_dump(parse_model(registry.lookup("source", ds.source).Options, ds.source_args,
                                                     f"datasets[{ds.key}].source_args"))
    dataset["builder_args"] = recipe_dump(parse_model(registry.lookup("builder", ds.builder).Options,
                                                      ds.builder_args, f"datasets[{ds.key}].builder_args"))
    return {"schema": SCHEMA_VERSION, "build": build, "dataset": dataset}


def dataset_hash(cfg: BuildConfig, ds: DatasetConfig) -> str:
    """A unit is done only if it was built with this hash (and its payload's, `recipe`)."""
    return stable_hash(dataset_recipe(cfg, ds))


def payload_hash(payload: dict[str, Any]) -> str:
    return stable_hash({k: v for k, v in payload.items() if k != DERIVED})


def recipe(dhash: str, payload: dict[str, Any]) -> dict[str, str]:
    """What a committed unit must have been built with to count as done (fields of its stats)."""
    return {"dataset_hash": dhash, "payload_hash": payload_hash(payload)}


def prepare_units(cfg: BuildConfig, out: str, planned: list[Any], pending: list[Any]) -> None:
    """Let each source that has a `prepare(index_url, planned, pending)` add build-wide facts to the
    payloads of its pending units (under DERIVED), e.g. LAION's URL dedup against the index kept in
    `<out>/dedup/sources/<dataset>/`. Nothing pending, nothing read: a finished build's rerun skips it."""
    for ds in cfg.datasets:
        todo = [u for u in pending if u.dataset == ds.key]
        if not todo or registry.lookup("source", ds.source).prepare is Source.prepare:
            continue
        source = make_source(cfg, ds)
        try:
            source.prepare(f"{out.rstrip('/')}/dedup/sources/{ds.key}",
                           [u for u in planned if u.dataset == ds.key], todo)
        finally:
            source.close()


def run_unit(cfg: BuildConfig, dataset: str, unit: str, payload: dict[str, Any], out: str) -> dict[str, Any]:
    """Build one unit and commit it; returns its stats (also written as the commit marker)."""
    ds = cfg.dataset(dataset)
    dhash = dataset_hash(cfg, ds)
    # The dataset's recipe only, not the whole config's: another dataset's change (or an appended
    # metadata file) must not change this shard's bytes (the chaos drill's plan detours caught it).
    file_meta = {"dataset_hash": dhash, "dataset": ds.key, "unit": unit}
    head = {"dataset": ds.key, "unit": unit, "source": ds.source, "builder": ds.builder, **recipe(dhash, payload)}

    def fill(writer: ShardWriter, audit: AuditLog, seconds: Counter[str]) -> dict[str, Any]:
        source, builder = make_source(cfg, ds), make_builder(cfg, ds)
        # the source's own count of this unit's inputs, from the plan's payload: `uvd validate`
        # holds the audit to it (an item that never got a row is not seen by inputs = ok + failed)
        head["planned_inputs"] = regroup.planned_items(source, payload)
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

    builder.start_unit(payload)
    t = time.perf_counter()
    for item in regroup.read(source, payload):
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
