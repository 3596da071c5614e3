"""Planning: every dataset's units, numbered in a deterministic order (what is done: uvd.engine)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvd import registry
from uvd.config import BuildConfig, DatasetConfig, parse_model
from uvd.layout import unit_name
from uvd.regroup import regroup
from uvd.unit import context, make_source


@dataclass(frozen=True, slots=True)  # 10^6 of them may be planned: no per-instance __dict__
class PlannedUnit:
    dataset: str
    unit: str
    payload: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.unit}"


def plan_dataset(cfg: BuildConfig, ds: DatasetConfig) -> list[PlannedUnit]:
    # The builder's options too (e.g. a pseudo-label model file): a dataset that cannot build is not planned.
    builder = registry.lookup("builder", ds.builder)
    options = parse_model(builder.Options, ds.builder_args, f"datasets[{ds.key}].builder_args")
    ctx = context(cfg, ds)
    grouping = builder.grouping(options, ctx)
    source = make_source(cfg, ds)
    try:
        payloads = source.plan(ds.items_per_unit)
        if grouping is not None:  # groups drawn from the whole dataset: the units are cut from them
            payloads = regroup(source, payloads, grouping, ds.items_per_unit,
                               lambda epoch: ctx.rng("dataset-permutation", grouping.key, epoch))
    finally:
        source.close()
    return [PlannedUnit(ds.key, unit_name(i), p) for i, p in enumerate(payloads)]


def plan_units(cfg: BuildConfig) -> list[PlannedUnit]:
    return [u for ds in cfg.datasets for u in plan_dataset(cfg, ds)]
