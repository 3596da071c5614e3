"""The manifest: config, units, shards (rows, bytes, sha256) and totals, made from the stats files."""
from __future__ import annotations

from collections import Counter
from typing import Any

import uvd
from uvd.config import BuildConfig
from uvd.layout import manifest as manifest_url
from uvd.layout import sentence_shard, stats_file
from uvd.plan import PlannedUnit
from uvd.storage import exists, read_json, write_json


def collect_stats(out: str, planned: list[PlannedUnit]) -> dict[str, dict[str, Any]]:
    found = {}
    for u in planned:
        url = stats_file(sentence_shard(out, u.dataset, u.unit))
        if exists(url):
            found[u.name] = read_json(url)
    return found


def write_manifest(cfg: BuildConfig, out: str, planned: list[PlannedUnit],
                   unit_errors: dict[str, str] | None = None) -> dict[str, Any]:
    stats = collect_stats(out, planned)
    unit_errors = unit_errors or {}
    units, shards = [], []
    totals: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    for u in planned:
        st = stats.get(u.name)
        if st is None:
            units.append({"dataset": u.dataset, "unit": u.unit, "status": "failed",
                          "error": unit_errors.get(u.name, "not built")})
            continue
        units.append({"dataset": u.dataset, "unit": u.unit, "status": "done",
                      "inputs": st["inputs"], "ok": st["ok"], "failed": st["failed"], "sentences": st["sentences"]})
        shards.append({"kind": "sentences", "dataset": u.dataset, "unit": u.unit, **st["shard"]})
        shards.append({"kind": "audit", "dataset": u.dataset, "unit": u.unit, **st["audit"]})
        for k in ("inputs", "ok", "failed", "sentences", "images"):
            totals[k] += st[k]
        totals["bytes"] += st["shard"]["bytes"]
        failures.update(st["failures"])
        tasks.update(st.get("tasks", {}))
    manifest = {
        "uvd_version": uvd.__version__,
        "schema_version": 1,
        "config_hash": cfg.hash(),
        "config": cfg.model_dump(mode="json"),
        "units": units,
        "shards": shards,
        "totals": {**dict(totals), "units": len(planned),
                   "units_done": sum(u["status"] == "done" for u in units),
                   "failures": dict(sorted(failures.items())), "tasks": dict(sorted(tasks.items()))},
    }
    write_json(manifest_url(out), manifest)
    return manifest
