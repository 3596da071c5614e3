"""Run a build on Ray: one task per pending unit, a bounded number in flight, retries, a summary."""
from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import nullcontext
from typing import Any

import uvd
from uvd import registry
from uvd.config import BuildConfig
from uvd.dedup import CONTENT_TABLE, write_content_table
from uvd.engine import Summary, find_committed, short_error, write_run_manifest
from uvd.layout import UnitLayout
from uvd.plan import PlannedUnit, plan_units
from uvd.procs import child_pids
from uvd.progress import progress as progress_bar
from uvd.unit import dataset_hash, recipe, run_unit

logger = logging.getLogger(__name__)

__all__ = ["Summary", "build", "init_ray", "stop_ray"]

# A worker keeps the parsed config of the build it serves: the driver puts it in the object
# store once, and each task only names it (no per-task JSON validation of the whole config).
_WORKER_CFG: dict[str, BuildConfig] = {}


def _run_unit_task(cfg_box: list[Any], cfg_hash: str, dataset: str, unit: str, payload: dict[str, Any],
                   out: str, plugin_tables: dict[str, list[str]]) -> dict[str, Any]:
    registry.use_tables(plugin_tables)  # a fresh worker knows the driver's plug-ins by name only
    cfg = _WORKER_CFG.get(cfg_hash)
    if cfg is None:
        import ray

        _WORKER_CFG.clear()
        cfg = _WORKER_CFG[cfg_hash] = ray.get(cfg_box[0])
    return run_unit(cfg, dataset, unit, payload, out)


def init_ray(workers: int) -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):  # a cluster, or `ray job submit` (which sets it)
        ray.init(log_to_driver=True)
    else:
        # "local": never attach by accident to another cluster `ray start` left on this machine.
        ray.init(address="local", num_cpus=workers or None, include_dashboard=False, log_to_driver=True)


def stop_ray() -> None:
    """ray.shutdown(), without waiting a second for Ray's autoscaler monitor.

    Ray stops its processes in order, raylet and GCS first, each with a SIGTERM and up to 1 s
    of grace. The monitor's SIGTERM handler reports its own end to the GCS that is already
    gone, so it always uses the whole second (measured: 1.0 of the 1.4 s a shutdown takes).
    A monitor this process started holds nothing worth a graceful end, so it is killed first.
    """
    import ray

    for pid in child_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"autoscaler" in cmd and b"monitor.py" in cmd:
                os.kill(pid, signal.SIGKILL)
        except OSError:  # gone already, or not Linux
            pass
    ray.shutdown()


def _log_unit(done: int, total: int, summary: Summary, t0: float, name: str) -> None:
    rate = summary.images / max(time.perf_counter() - t0, 1e-9)
    logger.debug("[%*d/%d] %s  sentences %d  failed items %d  %.1f img/s", len(str(total)), done, total, name,
                 summary.sentences, summary.failed, rate)


def _run_on_ray(cfg: BuildConfig, out: str, pending: list[PlannedUnit], summary: Summary, workers: int,
                t0: float, progress: Any) -> None:
    import ray

    init_ray(workers)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    limit = cfg.run.max_in_flight or 2 * max(cpus, 1)
    task = ray.remote(num_cpus=1, max_retries=cfg.run.max_retries, retry_exceptions=True)(_run_unit_task)
    cfg_box, cfg_hash, tables = [ray.put(cfg)], cfg.hash(), registry.tables()  # in a list: the task fetches it only on a cache miss
    queue = list(reversed(pending))
    in_flight: dict[Any, tuple[PlannedUnit, float]] = {}
    done = 0
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            u = queue.pop()
            in_flight[task.remote(cfg_box, cfg_hash, u.dataset, u.unit, u.payload, out, tables)] = (u, time.monotonic())
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
        for ref in ready:
            u, _ = in_flight.pop(ref)
            done += 1
            try:
                summary.add(u.name, ray.get(ref), progress)
            except Exception as err:  # retries exhausted: report the unit, go on with the others
                summary.fail(u.name, short_error(err), progress)
            _log_unit(done, len(pending), summary, t0, u.name)
        now = time.monotonic()
        for ref, (u, started) in list(in_flight.items()):
            if now - started > cfg.run.unit_timeout_s:
                ray.cancel(ref, force=True)
                in_flight.pop(ref)
                done += 1
                summary.fail(u.name, f"timeout: unit ran over {cfg.run.unit_timeout_s:.0f}s", progress)


def _run_inline(cfg: BuildConfig, out: str, pending: list[PlannedUnit], summary: Summary, t0: float,
                progress: Any) -> None:
    for i, u in enumerate(pending, 1):
        try:
            summary.add(u.name, run_unit(cfg, u.dataset, u.unit, u.payload, out), progress)
        except Exception as err:
            summary.fail(u.name, short_error(err), progress)
        _log_unit(i, len(pending), summary, t0, u.name)


def build(cfg: BuildConfig, out: str | None = None, workers: int | None = None, use_ray: bool = True,
          progress: Any = None) -> Summary:
    """Build every pending unit of `cfg` into `out` (default cfg.out), then write the manifest.

    `progress` (anything with `update(units=, items=, failed=)`) hears of every finished unit;
    by default a uvd.progress bar. The caller prints `Summary.report()` if it wants it.
    """
    out = (out or cfg.out).rstrip("/")
    workers = cfg.run.workers if workers is None else workers
    t0 = time.perf_counter()
    if use_ray:  # planning may itself run on Ray (the build-wide LAION dedup pass)
        init_ray(workers)
    layout = UnitLayout.sentences(out)
    planned = plan_units(cfg)
    dhash = {ds.key: dataset_hash(cfg, ds) for ds in cfg.datasets}  # once per dataset, not per unit

    def recipe_of(u: PlannedUnit) -> dict[str, str]:
        return recipe(dhash[u.dataset], u.payload)

    done = find_committed(layout, planned, recipe_of)
    pending = [u for u in planned if u.name not in done]
    summary = Summary(units=len(planned), skipped=len(planned) - len(pending))
    logger.info("plan: %d units in %d datasets; %d already done, %d to build → %s",
                len(planned), len(cfg.datasets), summary.skipped, len(pending), out)
    if pending:
        with progress_bar(len(pending), "build") if progress is None else nullcontext(progress) as bar:
            if use_ray:
                _run_on_ray(cfg, out, pending, summary, workers, t0, bar)
            else:
                _run_inline(cfg, out, pending, summary, t0, bar)
    summary.seconds = time.perf_counter() - t0
    header = {"uvd_version": uvd.__version__, "config_hash": cfg.hash(), "config": cfg.model_dump(mode="json")}
    hashed = [ds.key for ds in cfg.datasets if registry.lookup("source", ds.source).content_hashes]
    if hashed:  # only downloads record content hashes: other datasets' shards are never reread here
        write_content_table(out, hashed, changed=any(u.dataset in hashed for u in pending))
        header["dedup_table"] = CONTENT_TABLE
    write_run_manifest(layout, header, planned, done, summary, recipe_of)
    return summary
