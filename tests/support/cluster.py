"""A real Ray head on loopback (`ray start --head`) and an S3-compatible server (moto) for the tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from uvd.procs import child_pids

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """Environment variables pointing boto/s3fs at a loopback moto server, with bucket `uvd`."""
    from tests.support.counting_s3 import counting_moto

    with counting_moto() as (env, _):
        yield env


@contextmanager
def ray_head(extra_env: dict[str, str] | None = None, num_cpus: int = 2) -> Iterator[dict[str, str]]:
    """`ray start --head` on loopback in its own temp dir; yields the env a job client needs."""
    temp = tempfile.mkdtemp(prefix="uvdray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dash = free_port(), free_port()
    env = {**os.environ, **(extra_env or {}), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "UVD_TEST_CLUSTER": temp}  # marks every process of this cluster (see cluster_pids)
    env.pop("RAY_ADDRESS", None)
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--num-cpus={num_cpus}",
           f"--temp-dir={temp}", "--disable-usage-stats"]
    # Not a pipe: the daemons `ray start` leaves behind inherit its stdout and die of SIGPIPE once
    # a captured pipe is closed; a log file outlives this call.
    with open(Path(temp) / "ray-start.log", "wb") as log:
        subprocess.run(cmd, env=env, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=180)
    client = {**env, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # the job server comes up a little after `ray start` returns
            r = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", client["RAY_ADDRESS"]],
                               env=client, capture_output=True, timeout=60)
            if r.returncode == 0:
                break
            time.sleep(2)
        yield {**client, "RAY_GCS_ADDRESS": f"127.0.0.1:{gcs}", "RAY_TEMP_DIR": temp}
    finally:
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def pids_matching(match: Callable[[bytes, bytes], bool]) -> list[int]:
    """Processes (not this one) for which match(cmdline, environ) holds."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if match((proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def cluster_pids(temp: str) -> list[int]:
    """Processes of the cluster living in `temp`: their command line or environment names it (a busy
    worker's command line is replaced by its task's name, its environment is not)."""
    return pids_matching(lambda cmdline, environ: temp.encode() in cmdline + environ)


def stop_cluster(temp: str) -> None:
    """Stop only this cluster: `ray stop` would kill every Ray on the machine, other tests' too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in cluster_pids(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 10
        while cluster_pids(temp) and time.time() < deadline:
            time.sleep(0.5)


def submit(client_env: dict[str, str], entrypoint: str, timeout: int = 600) -> str:
    """`ray job submit --working-dir .` and wait; returns the job's logs (raises on failure)."""
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", client_env["RAY_ADDRESS"],
           "--working-dir", str(REPO), "--", "bash", "-c", entrypoint]
    for _ in range(20):  # the head's job agent registers some seconds after the job server answers
        r = subprocess.run(cmd, env=client_env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if "No available agent to submit job" not in r.stdout + r.stderr:
            break
        time.sleep(3)
    if r.returncode != 0 or "succeeded" not in r.stdout:
        raise AssertionError(f"job failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout


def kill_when_committed(proc: subprocess.Popen, stats_dir: Path, ray_tmp: Path, count: int = 2,
                        timeout: float = 240, poll: float = 0.05) -> None:
    """Once `count` units under `stats_dir` are committed, SIGKILL the driver's process group and
    the local Ray it started under `ray_tmp` (its workers live in another session)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(list(stats_dir.glob("*.stats.json"))) >= count:
            break
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    stop_cluster(str(ray_tmp))
    proc.wait(timeout=60)


@contextmanager
def local_cluster(gpu_node: bool = True, dashboard: bool = False) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a head with no CPUs
    for work and two 1-CPU worker nodes, the second with a fake `GPU: 1` when `gpu_node`. Each node
    is its own raylet that `cluster.remove_node(node)` kills. Yields (cluster, {"cpu": node, "gpu": node}).

    All nodes share this machine's disk, so a local output folder is visible to all of them here;
    on a real cluster it is not (uvd.cluster_checks)."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="uvdcl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    head: dict[str, Any] = {"num_cpus": 0, "temp_dir": temp, "include_dashboard": dashboard}
    if dashboard:
        # Its own agent port: the default (52365) may be taken by another Ray on this machine, and
        # then the Jobs API finds no agent on the head ("No available agent to submit job").
        head.update(dashboard_host="127.0.0.1", dashboard_port=free_port(), dashboard_agent_listen_port=free_port())
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        nodes = {"cpu": add_worker(cluster, "cpu"), "gpu": add_worker(cluster, "gpu" if gpu_node else "cpu")}
        yield cluster, nodes
    finally:
        cluster.shutdown()
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def cluster_env(cluster: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a driver (`uvd build`, `uvd tokenize`) that joins `cluster` through RAY_ADDRESS."""
    env = {**os.environ, **(extra or {}), "RAY_ADDRESS": cluster.address,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def raylet_pid(node: Any) -> int:
    """The raylet of a `ray.cluster_utils.Cluster` node: its workers are its children."""
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def busy_workers(node: Any, name: bytes) -> list[int]:
    """Worker processes of `node` (its raylet's children) running a task or holding an actor whose
    name contains `name` (Ray renames a busy worker `ray::<task>`, an actor's `ray::<class>...`)."""
    busy = []
    for pid in child_pids(raylet_pid(node)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # exited between the two reads
            continue
        if cmdline.startswith(b"ray::") and name in cmdline.split(b"\0", 1)[0]:
            busy.append(pid)
    return busy


def add_worker(cluster: Any, kind: str) -> Any:
    """A 1-CPU worker node (on this machine's address: a driver given 127.0.0.1 would resolve it to
    that address anyway, ray._private.services.resolve_ip_for_localhost); `kind` "gpu" adds a fake `GPU: 1` (CPU compute, real scheduling)."""
    node = cluster.add_node(num_cpus=1, num_gpus=1 if kind == "gpu" else 0)
    cluster.wait_for_nodes()
    return node
