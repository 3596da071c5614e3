"""Run a build on Ray: one task per pending unit, a bounded number in flight, retries, a summary."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from contextlib import nullcontext
from typing import Any

import uvd
from uvd import registry
from uvd.cluster_checks import alive_nodes, check_paths_for_cluster
from uvd.config import BuildConfig
from uvd.dedup import CONTENT_TABLE, write_content_table
from uvd.engine import Summary, find_committed, prune_outside, short_error, sweep_temps, write_run_manifest
from uvd.layout import UnitLayout
from uvd.lease import acquire, new_run_id
from uvd.plan import PlannedUnit, plan_units
from uvd.procs import child_pids
from uvd.progress import progress as progress_bar
from uvd.storage import set_run_id
from uvd.unit import dataset_hash, prepare_units, recipe, run_unit
from uvd.url_redact import redact_strings

logger = logging.getLogger(__name__)

__all__ = ["Summary", "build", "init_ray", "stop_ray"]

# A worker keeps the parsed config of the build it serves: the driver puts it in the object
# store once, and each task only names it (no per-task JSON validation of the whole config).
_WORKER_CFG: dict[str, BuildConfig] = {}


def _run_unit_task(cfg_box: list[Any], cfg_hash: str, dataset: str, unit: str, payload: dict[str, Any],
                   out: str, plugin_tables: dict[str, list[str]], run_id: str = "") -> dict[str, Any]:
    registry.use_tables(plugin_tables)  # a fresh worker knows the driver's plug-ins by name only
    set_run_id(run_id)  # its temporaries carry the build's run id (uvd.engine.sweep_temps)
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


def unit_resources(cfg: BuildConfig) -> dict[str, Any]:
    """What each unit task asks Ray for (`run.cpus_per_unit`, `run.memory_per_unit_mb`)."""
    res: dict[str, Any] = {"num_cpus": cfg.run.cpus_per_unit}
    if cfg.run.memory_per_unit_mb:
        res["memory"] = cfg.run.memory_per_unit_mb << 20
    return res


def _log_unit(done: int, total: int, summary: Summary, t0: float, name: str) -> None:
    rate = summary.images / max(time.perf_counter() - t0, 1e-9)
    logger.debug("[%*d/%d] %s  sentences %d  failed items %d  %.1f img/s", len(str(total)), done, total, name,
                 summary.sentences, summary.failed, rate)


def _run_on_ray(cfg: BuildConfig, out: str, pending: list[PlannedUnit], summary: Summary, workers: int,
                t0: float, progress: Any, run_id: str) -> None:
    import ray

    init_ray(workers)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    limit = cfg.run.max_in_flight or 2 * max(int(cpus / cfg.run.cpus_per_unit), 1)
    task = ray.remote(max_retries=cfg.run.max_retries, retry_exceptions=True,
                      **unit_resources(cfg))(_run_unit_task)
    cfg_box, cfg_hash, tables = [ray.put(cfg)], cfg.hash(), registry.tables()  # in a list: the task fetches it only on a cache miss
    queue = list(reversed(pending))
    in_flight: dict[Any, tuple[PlannedUnit, float]] = {}
    done = 0
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            u = queue.pop()
            ref = task.remote(cfg_box, cfg_hash, u.dataset, u.unit, u.payload, out, tables, run_id)
            in_flight[ref] = (u, time.monotonic())
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
          progress: Any = None, prune: bool = False, takeover: bool = False, shared_fs: bool = False) -> Summary:
    """Build every pending unit of `cfg` into `out` (default cfg.out), then write the manifest.

    The build holds the output's lease (uvd.lease) from before planning to the end: a second
    build on the same output raises uvd.lease.LeaseHeld at once; `takeover` replaces a stale lease.
    Units on disk outside the plan are reported in the summary and the manifest, never counted;
    `prune` removes their files. `progress` (anything with `update(units=, items=, failed=)`)
    hears of every finished unit; by default a uvd.progress bar. The caller prints
    `Summary.report()` if it wants it. On a Ray cluster of several nodes a local output or input
    path is refused (uvd.cluster_checks) unless `shared_fs` or `run.shared_fs` says every node mounts it.
    """
    out = (out or cfg.out).rstrip("/")
    workers = cfg.run.workers if workers is None else workers
    t0 = time.perf_counter()
    run_id = new_run_id()
    with acquire(out, run_id, takeover=takeover) as lease:
        set_run_id(run_id)
        try:
            return _build_held(cfg, out, workers, use_ray, progress, prune, run_id, lease, t0,
                               shared_fs or cfg.run.shared_fs)
        except BaseException:
            # A build ending early (Ctrl-C, an error) removes its own temporaries: its lease goes with
            # it, so a rerun could not tell them from a live build's until they are stale.
            with contextlib.suppress(Exception):
                sweep_temps(UnitLayout.sentences(out), [ds.key for ds in cfg.datasets])
            raise
        finally:
            set_run_id("")


def _build_held(cfg: BuildConfig, out: str, workers: int, use_ray: bool, progress: Any, prune: bool,
                run_id: str, lease: Any, t0: float, shared_fs: bool = False) -> Summary:
    if use_ray:  # planning may itself run on Ray (the build-wide LAION dedup pass)
        init_ray(workers)
        check_paths_for_cluster(cfg, out, alive_nodes(), shared_fs)
    layout = UnitLayout.sentences(out)
    planned = plan_units(cfg)
    dhash = {ds.key: dataset_hash(cfg, ds) for ds in cfg.datasets}  # once per dataset, not per unit

    def recipe_of(u: PlannedUnit) -> dict[str, str]:
        return recipe(dhash[u.dataset], u.payload)

    done = find_committed(layout, planned, recipe_of)
    pending = [u for u in planned if u.name not in done]
    prepare_units(cfg, out, planned, pending)  # build-wide facts (LAION's URL dedup) for pending units only
    summary = Summary(units=len(planned), skipped=len(planned) - len(pending))
    if prune:
        summary.pruned = prune_outside(layout, done.outside_plan)
    else:
        summary.outside_plan = done.outside_plan
    logger.info("plan: %d units in %d datasets; %d already done, %d to build → %s (run %s)",
                len(planned), len(cfg.datasets), summary.skipped, len(pending), out, run_id)
    if summary.outside_plan:
        logger.warning("%d units on disk are outside the plan and not counted (e.g. %s); `--prune` removes them",
                       len(summary.outside_plan), summary.outside_plan[0])
    if pending:
        with progress_bar(len(pending), "build") if progress is None else nullcontext(progress) as bar:
            if use_ray:
                _run_on_ray(cfg, out, pending, summary, workers, t0, bar, run_id)
            else:
                _run_inline(cfg, out, pending, summary, t0, bar)
    summary.seconds = time.perf_counter() - t0
    header = {"uvd_version": uvd.__version__, "config_hash": cfg.hash(), "config": redact_strings(cfg.model_dump(mode="json"))}
    hashed = [ds.key for ds in cfg.datasets if registry.lookup("source", ds.source).content_hashes]
    lease.check()  # taken over meanwhile: the other build owns the output and its manifest
    if hashed:  # only downloads record content hashes: other datasets' shards are never reread here
        committed = [u for u in planned if u.dataset in hashed and (u.name in done or u.name in summary.stats)]
        write_content_table(out, committed)  # the plan's committed units only: leftovers never pair
        header["dedup_table"] = CONTENT_TABLE
    write_run_manifest(layout, header, planned, done, summary, recipe_of, ended_runs=lease.ended_runs)
    return summary
