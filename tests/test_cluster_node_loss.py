"""Multi-node drills on one machine (`ray.cluster_utils.Cluster`): a head with no CPUs, two 1-CPU
worker nodes (one with a fake `GPU: 1`); a worker node removed with units in flight; nothing lost.

One cluster serves the whole module (starting one costs ~30 s on 2 busy cores); a drill that
removes a node adds a fresh one of the same kind before it ends. The nodes share this machine's
disk, which is why a local output folder works here with --shared-fs (on a real cluster it needs
a filesystem every node mounts)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.cluster import add_worker, busy_workers, cluster_env, local_cluster, moto_s3, pids_matching
from uvd.config import load_config
from uvd.runner import build
from uvd.storage import fs_and_path, glob
from uvd.validate import validate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
UNITS, ITEMS = 60, 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, dict[str, Any], dict[str, str]]]:
    # moto first: the nodes inherit its env. The dashboard serves the Jobs API (JobSubmissionClient).
    with moto_s3() as s3_env, local_cluster(dashboard=True) as (c, nodes):
        yield c, nodes, s3_env


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> tuple[Path, Path]:
    """The drill's config and its one-node build (no Ray, units one after another): the reference."""
    base = tmp_path_factory.mktemp("drill")
    cfg = {"seed": 3, "run": {"max_retries": 3},
           "datasets": [{"name": "slow", "source": "tests.support.drill_sources:SlowSource",
                         "source_args": {"units": UNITS, "items": ITEMS, "seconds_per_item": 0.2}}]}
    config = base / "drill.yaml"
    config.write_text(yaml.safe_dump(cfg))
    sys.path.insert(0, str(ROOT))
    try:
        assert build(load_config(config), out=str(base / "clean"), use_ray=False).succeeded
    finally:
        sys.path.remove(str(ROOT))
    return config, base / "clean"


def _shards(out: str) -> dict[str, bytes]:
    shards = {}
    for url in glob(out, "sentences/slow/part-*.parquet"):
        fs, path = fs_and_path(url)
        shards[url.rsplit("/", 1)[1]] = fs.cat_file(path)
    return shards


def _audit_ids(out: str) -> list[str]:
    ids = []
    for url in glob(out, "audit/slow/part-*.parquet"):
        fs, path = fs_and_path(url)
        with fs.open(path, "rb") as f:
            ids += pq.read_table(f, columns=["item_id"]).column(0).to_pylist()
    return sorted(ids)


def _committed(out: str) -> int:
    fs, _ = fs_and_path(out)
    fs.invalidate_cache()  # s3fs caches listings: a poll must see new objects
    return len(glob(out, "sentences/slow/*.stats.json"))


def _uvd(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:  # a file, not a pipe: nobody reads a pipe while the drill polls
        return subprocess.Popen([sys.executable, "-m", "uvd", *args], env=env, stdout=f, stderr=subprocess.STDOUT,
                                cwd=ROOT)


def _lose_gpu_node_mid_run(c: Any, nodes: dict[str, Any], proc: subprocess.Popen, committed: Callable[[], int],
                           total: int, log: Path, rerun_args: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """Remove the GPU node while its actor pool works and a few units are committed; a fresh GPU
    node joins (as an autoscaler would bring one); wait for the job, and run it again if it failed
    (the issue allows a rerun to finish it). Returns (units committed at the removal, rerun needed)."""
    in_flight: list[int] = []
    on_cpu_node: list[int] = []
    deadline = time.time() + 100
    while time.time() < deadline and proc.poll() is None:
        in_flight = busy_workers(nodes["gpu"], b"MapWorker")
        if in_flight and committed() >= 3:
            on_cpu_node = busy_workers(nodes["cpu"], b"MapWorker")
            c.remove_node(nodes["gpu"])
            break
        time.sleep(0.05)
    committed_before = committed()
    if in_flight:
        nodes["gpu"] = add_worker(c, "gpu")
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert in_flight, f"the GPU node was not removed mid-run:\n{log.read_text()[-3000:]}"
    assert committed_before < total, "the removal should land mid-run"
    assert not on_cpu_node  # the pool lives on the node with the GPU resource
    rerun = proc.returncode != 0
    if rerun:
        again = subprocess.run([sys.executable, "-m", "uvd", *rerun_args], env=env, capture_output=True, text=True,
                               timeout=120, cwd=ROOT)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return committed_before, rerun


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_node_removed_mid_build_loses_nothing(cluster, drill, tmp_path, where):
    c, nodes, s3_env = cluster
    config, clean = drill
    out = f"s3://uvd/node-loss-{tmp_path.name}" if where == "s3" else str(tmp_path / "out")
    shared = ["--shared-fs"] if where == "local" else []  # the nodes share this machine's disk
    log = tmp_path / "build.log"
    proc = _uvd(["build", str(config), "--out", out, *shared], cluster_env(c, s3_env), log)

    in_flight: list[int] = []
    deadline = time.time() + 100
    while time.time() < deadline and proc.poll() is None and _committed(out) < 6:
        time.sleep(0.2)
    while time.time() < deadline and proc.poll() is None:  # mid-build: some units done, this node running one
        in_flight = busy_workers(nodes["cpu"], b"_run_unit_task")
        if in_flight:
            c.remove_node(nodes["cpu"])
            break
        time.sleep(0.02)
    removed = bool(in_flight)
    committed_before = _committed(out)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        if removed:
            nodes["cpu"] = add_worker(c, "cpu")  # the next drill gets the same cluster shape
    text = log.read_text()
    assert removed, f"the node was not removed mid-build:\n{text[-3000:]}"
    assert committed_before < UNITS
    rerun = False
    if proc.returncode != 0:  # allowed by the issue: a rerun finishes it
        rerun = True
        again = subprocess.run([sys.executable, "-m", "uvd", "build", str(config), "--out", out, *shared],
                               env=cluster_env(c, s3_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    print(f"node-loss build drill ({where}): {len(in_flight)} unit(s) in flight on the removed node, "
          f"{committed_before}/{UNITS} committed before, retried by Ray on the other node, "
          f"rerun needed: {rerun}")
    fs_and_path(out)[0].invalidate_cache()  # this process listed the output mid-build
    assert validate(out) == []
    ids = _audit_ids(out)
    assert len(ids) == len(set(ids)) == UNITS * ITEMS  # every input item accounted for once
    assert ids == _audit_ids(str(clean))
    assert _shards(out) == _shards(str(clean))  # byte-identical to a one-node build
    if where == "local":  # the dead node's temporaries were swept: nothing left to block or mislead
        assert not list((Path(out) / "sentences").rglob("*.tmp-*"))


def test_a_local_output_on_several_nodes_is_refused_at_plan_time(cluster, drill, tmp_path):
    c, _, s3_env = cluster
    config, _ = drill
    r = subprocess.run([sys.executable, "-m", "uvd", "build", str(config), "--out", str(tmp_path / "out")],
                       env=cluster_env(c, s3_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "the Ray cluster has 3 nodes" in r.stderr and "is a local path" in r.stderr and "--shared-fs" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "sentences").exists()  # refused before any unit ran


def _token_shards(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("tokens/*/slow/part-*.parquet"))}


def test_gpu_node_removed_mid_tokenize_loses_nothing(cluster, drill, tmp_path):
    from tokenize_job.job import tokenize
    from tokenize_job.vqgan import VQGAN, VQGANConfig

    c, nodes, s3_env = cluster
    _, clean = drill
    tok = VQGAN(VQGANConfig.tiny()).save_pretrained(tmp_path / "tok", name="tiny")
    reference = tmp_path / "reference"
    assert tokenize(str(clean), str(tok), out=str(reference), use_ray=False, threads=1, log=lambda _: None).ok
    out = tmp_path / "tokens-out"
    args = ["tokenize", str(clean), "--tokenizer", str(tok), "--out", str(out), "--threads", "1"]
    proc = _uvd(args, cluster_env(c, s3_env), tmp_path / "tokenize.log")

    def committed() -> int:
        return len(list(out.glob("tokens/*/slow/*.stats.json")))

    committed_before, rerun = _lose_gpu_node_mid_run(c, nodes, proc, committed, UNITS, tmp_path / "tokenize.log",
                                                     args, cluster_env(c, s3_env))
    print(f"node-loss tokenize drill: encoder actor in flight on the removed GPU node, {committed_before}/{UNITS} "
          f"token shards committed before, rerun needed: {rerun}")
    assert committed() == UNITS
    assert _token_shards(out) == _token_shards(reference)  # identical to a one-node run


def test_job_submitted_driver_killed_then_resubmitted_resumes(cluster, drill, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    c, _, s3_env = cluster
    config, clean = drill
    out = f"s3://uvd/job-{tmp_path.name}"
    client = JobSubmissionClient(f"http://{c.webui_url}")
    job = {"entrypoint": f"{sys.executable} -m uvd build {config} --out {out}",
           # The user's path: the working directory travels with the job (no data, no weights in it).
           # PYTHONPATH: the drill's slow source (tests.support) is not found from the uploaded copy by
           # the build's driver (not yet understood; a plug-in installed as a package is the user's way).
           "runtime_env": {"working_dir": str(ROOT), "excludes": [".git", "sample_data", "docs", "*.png"],
                           "env_vars": {"PYTHONPATH": str(ROOT)}}}

    def wait(job_id: str, until: set[JobStatus]) -> JobStatus:
        deadline = time.time() + 110
        while time.time() < deadline:
            status = client.get_job_status(job_id)
            if status in until:
                return status
            time.sleep(0.3)
        raise AssertionError(f"{job_id}: still {status}:\n{client.get_job_logs(job_id)[-3000:]}")

    def submit() -> str:
        for _ in range(30):  # the head's job agent registers some seconds after the dashboard answers
            try:
                return client.submit_job(**job)
            except RuntimeError as err:
                if "No available agent" not in str(err):
                    raise
                time.sleep(2)
        raise AssertionError("the Jobs API never found an agent")

    first = submit()
    wait(first, {JobStatus.RUNNING})
    deadline = time.time() + 100
    while time.time() < deadline and _committed(out) < 6 and client.get_job_status(first) == JobStatus.RUNNING:
        time.sleep(0.2)
    drivers = pids_matching(lambda cmdline, _: b"uvd\0build" in cmdline and out.encode() in cmdline)
    assert drivers, client.get_job_logs(first)[-3000:]
    for pid in drivers:
        os.kill(pid, signal.SIGKILL)
    assert wait(first, {JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.STOPPED}) == JobStatus.FAILED
    done_before = _committed(out)
    assert 6 <= done_before < UNITS, f"the kill should land mid-build:\n{client.get_job_logs(first)[-3000:]}"

    second = submit()
    assert wait(second, {JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.STOPPED}) == JobStatus.SUCCEEDED, \
        client.get_job_logs(second)[-3000:]
    logs = client.get_job_logs(second)
    assert f"{done_before} already done, {UNITS - done_before} built, 0 failed" in logs  # it resumed
    print(f"job drill: driver killed with {done_before}/{UNITS} committed; resubmitted job resumed")
    fs_and_path(out)[0].invalidate_cache()
    assert validate(out) == []
    assert _shards(out) == _shards(str(clean))


def test_gpu_node_removed_mid_pseudo_label_loses_nothing(cluster, tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from renderers.labeler import conv_head

    c, nodes, s3_env = cluster
    torch.manual_seed(0)
    model = tmp_path / "seg.pt"  # a tiny segmentation expert: a state dict of a registered architecture
    torch.save(conv_head(out_channels=5, hidden=4).state_dict(), model)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    n = 30
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos / f"p{i:03d}.jpg", quality=90)
    args = [str(model), "--kind", "segmentation", "--arch", "conv_head", "--arch-args",
            '{"out_channels": 5, "hidden": 4}', "--unit-size", "1", "--batch-size", "1"]
    reference = tmp_path / "reference"
    one = subprocess.run([sys.executable, "-m", "uvd", "pseudo-label", str(photos), str(reference), "--model", *args,
                          "--no-ray"], env=cluster_env(c, s3_env), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    out = tmp_path / "labels"
    cmd = ["pseudo-label", str(photos), str(out), "--model", *args]
    proc = _uvd(cmd, cluster_env(c, s3_env), tmp_path / "label.log")

    def committed() -> int:
        return len(list(out.glob("_uvd/units/*/*.stats.json")))

    committed_before, rerun = _lose_gpu_node_mid_run(c, nodes, proc, committed, n, tmp_path / "label.log", cmd,
                                                     cluster_env(c, s3_env))
    print(f"node-loss pseudo-label drill: labeller actor in flight on the removed GPU node, {committed_before}/{n} "
          f"units committed before, rerun needed: {rerun}")
    assert committed() == n

    def labels(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.glob("*.png"))}

    assert len(labels(out)) == n
    assert labels(out) == labels(reference)  # identical to a one-node run
