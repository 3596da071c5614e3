"""Run a build on Ray: one task per pending unit, a bounded number in flight, retries, a summary."""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvd import registry
from uvd.config import BuildConfig
from uvd.dedup import write_content_table
from uvd.manifest import write_manifest
from uvd.plan import PlannedUnit, committed, plan_units
from uvd.progress import Progress, progress
from uvd.unit import run_unit


@dataclass
class Summary:
    units: int = 0
    skipped: int = 0
    built: int = 0
    failed_units: dict[str, str] = field(default_factory=dict)
    inputs: int = 0
    ok: int = 0
    failed: int = 0
    sentences: int = 0
    images: int = 0
    failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        """Every planned unit is committed (bad items may still have failed, with reasons)."""
        return not self.failed_units

    def add(self, stats: dict[str, Any]) -> None:
        self.built += 1
        for k in ("inputs", "ok", "failed", "sentences", "images"):
            setattr(self, k, getattr(self, k) + stats[k])
        self.failures.update(stats["failures"])

    def report(self) -> str:
        rate = self.images / self.seconds if self.seconds else 0.0
        lines = [
            f"units: {self.units} planned, {self.skipped} already done, {self.built} built, "
            f"{len(self.failed_units)} failed",
            f"items: {self.inputs} read, {self.ok} ok, {self.failed} failed",
            f"sentences: {self.sentences}   images: {self.images}   {rate:.1f} images/s over {self.seconds:.1f}s",
        ]
        if self.failures:
            lines.append("failures by reason: " + ", ".join(f"{k} {v}" for k, v in self.failures.most_common()))
        for name, err in sorted(self.failed_units.items()):
            lines.append(f"UNIT FAILED {name}: {err}")
        return "\n".join(lines)


logger = logging.getLogger(__name__)


def _run_unit_task(cfg_json: dict[str, Any], dataset: str, unit: str, payload: dict[str, Any],
                   out: str, plugin_tables: dict[str, list[str]]) -> dict[str, Any]:
    registry.use_tables(plugin_tables)  # a fresh worker knows the driver's plug-ins by name only
    return run_unit(BuildConfig.model_validate(cfg_json), dataset, unit, payload, out)


def init_ray(workers: int) -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):  # a cluster, or `ray job submit` (which sets it)
        ray.init(log_to_driver=True)
    else:
        # "local": never attach by accident to another cluster `ray start` left on this machine.
        ray.init(address="local", num_cpus=workers or None, include_dashboard=False, log_to_driver=True)


def _unit_done(bar: Progress, summary: Summary, before: tuple[int, int, int], name: str) -> None:
    """One unit finished (built or failed): items read and failed since `before`, logged per unit at debug."""
    inputs, failed, units_failed = before
    bar.update(1, items=summary.inputs - inputs,
               failed=summary.failed - failed + len(summary.failed_units) - units_failed)
    logger.debug("unit %s done: %d sentences so far, %d failed items", name, summary.sentences, summary.failed)


def _mark(summary: Summary) -> tuple[int, int, int]:
    return summary.inputs, summary.failed, len(summary.failed_units)


def _run_on_ray(cfg: BuildConfig, out: str, pending: list[PlannedUnit], summary: Summary, workers: int,
                bar: Progress) -> None:
    import ray

    init_ray(workers)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    limit = cfg.run.max_in_flight or 2 * max(cpus, 1)
    task = ray.remote(num_cpus=1, max_retries=cfg.run.max_retries, retry_exceptions=True)(_run_unit_task)
    cfg_json = cfg.model_dump(mode="json")
    tables = registry.tables()
    queue = list(pending)
    in_flight: dict[Any, tuple[PlannedUnit, float]] = {}
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            u = queue.pop(0)
            in_flight[task.remote(cfg_json, u.dataset, u.unit, u.payload, out, tables)] = (u, time.monotonic())
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
        for ref in ready:
            u, _ = in_flight.pop(ref)
            before = _mark(summary)
            try:
                summary.add(ray.get(ref))
            except Exception as err:  # retries exhausted: report the unit, go on with the others
                summary.failed_units[u.name] = _short(err)
            _unit_done(bar, summary, before, u.name)
        now = time.monotonic()
        for ref, (u, started) in list(in_flight.items()):
            if now - started > cfg.run.unit_timeout_s:
                ray.cancel(ref, force=True)
                in_flight.pop(ref)
                before = _mark(summary)
                summary.failed_units[u.name] = f"timeout: unit ran over {cfg.run.unit_timeout_s:.0f}s"
                _unit_done(bar, summary, before, u.name)


def _run_inline(cfg: BuildConfig, out: str, pending: list[PlannedUnit], summary: Summary, bar: Progress) -> None:
    for u in pending:
        before = _mark(summary)
        try:
            summary.add(run_unit(cfg, u.dataset, u.unit, u.payload, out))
        except Exception as err:
            summary.failed_units[u.name] = _short(err)
        _unit_done(bar, summary, before, u.name)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:500]


def build(cfg: BuildConfig, out: str | None = None, workers: int | None = None, use_ray: bool = True) -> Summary:
    """Build every pending unit of `cfg` into `out` (default cfg.out), then write the manifest.

    Progress is logged (uvd.progress); the caller prints `Summary.report()` if it wants it."""
    out = (out or cfg.out).rstrip("/")
    workers = cfg.run.workers if workers is None else workers
    t0 = time.perf_counter()
    if use_ray:  # planning may itself run on Ray (the build-wide LAION dedup pass)
        init_ray(workers)
    planned = plan_units(cfg)
    pending = [u for u in planned if not committed(cfg, out, u)]
    summary = Summary(units=len(planned), skipped=len(planned) - len(pending))
    logger.info("plan: %d units in %d datasets; %d already done, %d to build → %s",
                len(planned), len(cfg.datasets), summary.skipped, len(pending), out)
    if pending:
        with progress(len(pending), "build") as bar:
            if use_ray:
                _run_on_ray(cfg, out, pending, summary, workers, bar)
            else:
                _run_inline(cfg, out, pending, summary, bar)
    summary.seconds = time.perf_counter() - t0
    write_content_table(out, changed=bool(pending))
    write_manifest(cfg, out, planned, summary.failed_units)
    return summary
