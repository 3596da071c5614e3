"""Build one dataset in-process through the planner (uvd.plan), so dataset-wide regrouping happens as in
`uvd build`; returns every sentence row and every audit row (an item has one audit row per epoch)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from uvd.config import BuildConfig
from uvd.plan import plan_dataset
from uvd.unit import run_unit


def planned_build(tmp_path: Path, dataset: dict[str, Any], seed: int = 0, reverse: bool = False,
                  out_name: str = "out") -> tuple[list[dict], list[dict], list[dict]]:
    """(sentence rows, audit rows, unit payloads); `reverse` runs the units last to first."""
    out = tmp_path / out_name
    cfg = BuildConfig.model_validate({"out": str(out), "seed": seed, "datasets": [dataset]})
    ds = cfg.datasets[0]
    units = plan_dataset(cfg, ds)
    for u in (reversed(units) if reverse else units):
        run_unit(cfg, ds.key, u.unit, u.payload, str(out))
    rows = [r for p in sorted((out / "sentences" / ds.key).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    audit = [r for p in sorted((out / "audit" / ds.key).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return rows, audit, [u.payload for u in units]
