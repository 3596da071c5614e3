"""Injected faults for the chaos drill (tests/test_chaos.py): end or pause this process at a named point.

`maybe_die(point)` does nothing unless the environment variable UVD_FAULTS names `point`
(one dict lookup when it is unset). Its value is a comma-separated list of `point:spec`:

- `after_shard:0.3`        SIGKILL this process with probability 0.3 each time the point is reached
                           (the draws come from UVD_FAULTS_SEED, default 0, and the point's name);
- `during_manifest:@2`     SIGKILL at the 2nd time this process reaches the point;
- `after_shard:sleep=1.5`  sleep 1.5 s each time (`sleep=1.5@1`: only the first time), so that a
                           drill can act while the process stands at the point;
- `after_shard:wait=/tmp/go@1`  stand at the point until that file exists (at most WAIT_LIMIT_S):
                           the drill decides when the process goes on.

A kill is a real SIGKILL of the process itself, as an operator or the OOM killer would send it:
no exception handler, `finally` or atexit hook runs. Before it, one line goes to stderr
(`uvd.faults: SIGKILL at <point>`; `uvd.faults: sleeping …`, `waiting …`) so a drill can tell an
injected kill from any other end. Counters are per process: each Ray worker counts its own hits.
"""
from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass

ENV = "UVD_FAULTS"
SEED_ENV = "UVD_FAULTS_SEED"
WAIT_LIMIT_S = 120.0  # a `wait=` whose file never comes goes on after this: a drill's bug never hangs a build


@dataclass(frozen=True)
class Fault:
    action: str  # "kill", "sleep" or "wait"
    probability: float = 1.0  # per hit, when `at` is 0
    at: int = 0  # the 1-based hit that triggers it; 0 = every hit (subject to `probability`)
    seconds: float = 0.0  # for "sleep"
    path: str = ""  # for "wait"


def parse(text: str) -> dict[str, Fault]:
    """`point:spec,…` → point → Fault; a malformed entry is a ValueError naming it."""
    faults: dict[str, Fault] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        point, sep, spec = entry.partition(":")
        if not sep or not point:
            raise ValueError(f"{ENV}: {entry!r} is not point:spec")
        try:
            if spec.startswith("sleep="):
                seconds, _, at = spec[len("sleep="):].partition("@")
                faults[point] = Fault("sleep", seconds=float(seconds), at=int(at) if at else 0)
            elif spec.startswith("wait="):
                path, _, at = spec[len("wait="):].rpartition("@") if "@" in spec else (spec[len("wait="):], "", "")
                if not path:
                    raise ValueError(spec)
                faults[point] = Fault("wait", path=path, at=int(at) if at else 0)
            elif spec.startswith("@"):
                faults[point] = Fault("kill", at=int(spec[1:]))
            else:
                p = float(spec)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(p)
                faults[point] = Fault("kill", probability=p)
        except ValueError:
            raise ValueError(f"{ENV}: bad spec {spec!r} for point {point!r} "
                             "(a probability, @N, sleep=S[@N] or wait=PATH[@N])") from None
    return faults


_parsed: tuple[str, dict[str, Fault]] = ("", {})
_hits: dict[str, int] = {}
_rngs: dict[str, random.Random] = {}


def _say(text: str) -> None:
    os.write(2, f"uvd.faults: {text} (pid {os.getpid()})\n".encode())


def maybe_die(point: str) -> None:
    """End (SIGKILL) or pause this process here if UVD_FAULTS asks for it at `point`."""
    text = os.environ.get(ENV)
    if not text:
        return
    global _parsed
    if _parsed[0] != text:  # a new plan: its counts and draws start afresh
        _parsed = (text, parse(text))
        _hits.clear()
        _rngs.clear()
    fault = _parsed[1].get(point)
    if fault is None:
        return
    hit = _hits[point] = _hits.get(point, 0) + 1
    if fault.at:
        fires = hit == fault.at
    else:
        rng = _rngs.setdefault(point, random.Random(f"{os.environ.get(SEED_ENV, '0')}:{point}"))
        fires = rng.random() < fault.probability
    if not fires:
        return
    if fault.action == "sleep":
        _say(f"sleeping {fault.seconds:g}s at {point}")
        time.sleep(fault.seconds)
        return
    if fault.action == "wait":
        _say(f"waiting at {point} for {fault.path}")
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not os.path.exists(fault.path) and time.monotonic() < deadline:
            time.sleep(0.02)
        return
    _say(f"SIGKILL at {point}")
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # where there is no SIGKILL: still no cleanup of any kind
