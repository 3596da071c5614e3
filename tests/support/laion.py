"""Helpers shared by the LAION tests (no tests here): run the source's units in-process, read results."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from uvd.config import BuildConfig
from uvd.layout import audit_shard, sentence_shard, unit_name
from uvd.unit import make_source, run_unit

# Short everything: the stalling server must cost about a second, not the default ten.
FAST_DOWNLOAD = {"allow_loopback": True, "connect_timeout_s": 1.0, "read_timeout_s": 0.6, "total_timeout_s": 4.0,
                 "dns_timeout_s": 0.5, "retries": 2, "backoff_s": 0.02, "max_bytes": 2 << 20, "concurrency": 16}


def config(out: Path, source: str, source_args: dict[str, Any], items_per_unit: int = 64, seed: int = 0) -> BuildConfig:
    return BuildConfig.model_validate({
        "out": str(out), "seed": seed,
        "datasets": [{"name": "web", "source": source, "source_args": source_args, "builder": "single",
                      "items_per_unit": items_per_unit}],
    })


def run_all_units(cfg: BuildConfig) -> list[dict[str, Any]]:
    """Plan and run every unit in-process, as each Ray task would; returns their stats."""
    ds = cfg.datasets[0]
    payloads = make_source(cfg, ds).plan(ds.items_per_unit)
    return [run_unit(cfg, ds.key, unit_name(i), p, cfg.out) for i, p in enumerate(payloads)]


def audit_rows(cfg: BuildConfig, n_units: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n_units):
        rows += pq.read_table(audit_shard(cfg.out, "web", unit_name(i))).to_pylist()
    return rows


def sentences(cfg: BuildConfig, n_units: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n_units):
        rows += pq.read_table(sentence_shard(cfg.out, "web", unit_name(i))).to_pylist()
    return rows


def write_metadata(path: Path, columns: dict[str, list[Any]], row_group_size: int = 1 << 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path
