"""What a process knows of its own: children from /proc (Linux; elsewhere none), CPUs Ray gave it."""
from __future__ import annotations

import os


def child_pids(pid: int | str = "self") -> list[int]:
    """The children of `pid`, from each of its threads' /proc children list."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:  # gone, or not Linux
        pass
    return out


def assigned_cpus() -> int:
    """The CPUs Ray assigned to the calling task or actor (1 outside Ray): a torch thread count that
    does not oversubscribe the node."""
    try:
        import ray

        return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except Exception:
        return 1
