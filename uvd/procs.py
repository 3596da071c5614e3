"""A process's children, read from /proc (Linux; elsewhere none): no process table scan."""
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
