"""Planning: every dataset's units, numbered in a deterministic order, and which are already done."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvd import registry
from uvd.config import BuildConfig, DatasetConfig, parse_model
from uvd.layout import sentence_shard, stats_file, unit_name
from uvd.storage import exists, read_json
from uvd.unit import dataset_hash, make_source, payload_hash


@dataclass(frozen=True)
class PlannedUnit:
    dataset: str
    unit: str
    payload: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.unit}"


def plan_dataset(cfg: BuildConfig, ds: DatasetConfig) -> list[PlannedUnit]:
    # The builder's options too (e.g. a pseudo-label model file): a dataset that cannot build is not planned.
    parse_model(registry.lookup("builder", ds.builder).Options, ds.builder_args, f"datasets[{ds.key}].builder_args")
    source = make_source(cfg, ds)
    try:
        payloads = source.plan(ds.items_per_unit)
    finally:
        source.close()
    return [PlannedUnit(ds.key, unit_name(i), p) for i, p in enumerate(payloads)]


def plan_units(cfg: BuildConfig) -> list[PlannedUnit]:
    return [u for ds in cfg.datasets for u in plan_dataset(cfg, ds)]


def committed(cfg: BuildConfig, out: str, u: PlannedUnit) -> bool:
    """Done means: its stats file exists and was written for this exact dataset recipe and payload."""
    url = stats_file(sentence_shard(out, u.dataset, u.unit))
    if not exists(url):
        return False
    try:
        stats = read_json(url)
    except Exception:
        return False
    return (stats.get("dataset_hash") == dataset_hash(cfg, cfg.dataset(u.dataset))
            and stats.get("payload_hash") == payload_hash(u.payload))
