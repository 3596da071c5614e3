"""Machine-wide CPU accounting from /proc/stat: every process counts (Ray's daemons, the web
server, the benchmark itself), which a per-process timer would miss."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_idle() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    # steal is time another VM ran, guest is already inside user: neither is ours to count.
    return (user + nice + system + irq + softirq) / _TICK, (idle + iowait) / _TICK


@dataclass
class Span:
    wall_s: float
    busy_cpu_s: float

    def per_busy(self, n: int) -> float:
        return n / self.busy_cpu_s if self.busy_cpu_s else float("nan")


class Meter:
    """with Meter() as m: ...; m.span → wall seconds and machine busy CPU-seconds inside the block."""

    def __enter__(self) -> "Meter":
        self._t, (self._busy, _) = time.perf_counter(), _busy_idle()
        return self

    def __exit__(self, *_: object) -> None:
        self.span = Span(time.perf_counter() - self._t, _busy_idle()[0] - self._busy)


def load_average() -> float:
    return os.getloadavg()[0]
