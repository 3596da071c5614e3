"""Machine-wide CPU accounting from /proc/stat: every process counts (Ray's daemons, the web
server, the benchmark itself), which a per-process timer would miss. And a process's own peak RSS."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # uvd, however this is started
from uvd.procs import child_pids  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def peak_rss_kb() -> int:
    """This process's peak RSS since it started (VmHWM). Not ru_maxrss: after a fork + exec, Linux
    carries the parent's peak into the child's ru_maxrss, and the parents of our measured processes
    often serve moto's S3 (gigabytes at 10^5 units), which made them look that large."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _busy_idle() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    # steal is time another VM ran, guest is already inside user: neither is ours to count.
    return (user + nice + system + irq + softirq) / _TICK, (idle + iowait) / _TICK


def busy_cpu_s() -> float:
    """Machine-wide busy CPU seconds so far (all cores)."""
    return _busy_idle()[0]


@dataclass
class Span:
    wall_s: float
    busy_cpu_s: float
    tree_cpu_s: float = float("nan")  # the measured process tree alone (TreeCPU), when known
    by_kind: dict[str, float] | None = None  # that tree's CPU-s per kind of process (TreeCPU.by_kind)

    def per_busy(self, n: int) -> float:
        return n / self.busy_cpu_s if self.busy_cpu_s else float("nan")


class Meter:
    """with Meter() as m: ...; m.span → wall seconds and machine busy CPU-seconds inside the block."""
    # The machine-wide figure is the one that counts (nothing escapes it); TreeCPU is the
    # check on a shared machine, where the neighbours' work lands in it too.

    def __enter__(self) -> "Meter":
        self._t, (self._busy, _) = time.perf_counter(), _busy_idle()
        return self

    def __exit__(self, *_: object) -> None:
        self.span = Span(time.perf_counter() - self._t, _busy_idle()[0] - self._busy)


def load_average() -> float:
    return os.getloadavg()[0]


class TreeCPU:
    """CPU-seconds of one process and all its descendants, however they were started (Ray's
    workers are the raylet's children, not ours to reap): every live descendant's utime+stime
    is polled from /proc and the last value seen per process is summed. Other tenants of a
    shared machine do not count here, which is what makes it usable on a noisy machine; a
    process that lives less than one poll is missed.

    with TreeCPU(proc.pid) as t: proc.wait()  → t.cpu_s
    """

    def __init__(self, root: int, interval_s: float = 0.1) -> None:
        import threading

        self.root, self.interval_s = root, interval_s
        self.seen: dict[int, float] = {}
        self.kinds: dict[int, str] = {}  # pid → what it is (kind_of), fixed when first seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self, pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # utime + stime only: a reaped child's cutime was seen while it lived (no double count)
        return (int(rest[11]) + int(rest[12])) / _TICK

    def poll(self) -> None:
        stack = [self.root]
        while stack:
            pid = stack.pop()
            cpu = self._cpu(pid)
            if cpu is not None:
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
                if pid not in self.kinds:
                    self.kinds[pid] = "driver" if pid == self.root else kind_of(pid)
            stack += child_pids(pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def __enter__(self) -> "TreeCPU":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return sum(self.seen.values())

    def by_kind(self) -> dict[str, float]:
        """CPU-seconds per kind of process (driver, Ray worker, Ray daemons, decoder, …)."""
        out: dict[str, float] = {}
        for pid, cpu in self.seen.items():
            out[self.kinds.get(pid, "other")] = out.get(self.kinds.get(pid, "other"), 0.0) + cpu
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def kind_of(pid: int) -> str:
    """What a descendant of a measured command is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "other"
    line = " ".join(argv)
    if "sources.video_decode" in line:
        return "video decoder"
    if (argv and argv[0].startswith("ray::")) or "default_worker.py" in line:
        return "Ray worker"
    if any(d in line for d in ("gcs_server", "raylet", "dashboard", "runtime_env", "log_monitor", "monitor.py",
                               "ray/_private")):
        return "Ray daemons"
    return os.path.basename(argv[0]) if argv else "other"


def run_measured(cmd: list[str], **popen: object) -> tuple[object, Span]:
    """Run cmd to completion; (CompletedProcess-like result, Span with machine and tree CPU)."""
    import subprocess

    with Meter() as m:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        with TreeCPU(proc.pid) as tree:
            out, err = proc.communicate()
        tree.poll()
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    return result, Span(m.span.wall_s, m.span.busy_cpu_s, tree.cpu_s, tree.by_kind())
