"""The run's `<out>/log.jsonl`: one JSON record per logged step, written by rank 0.

In a POSIX folder each record is appended as it comes (one write per line: a kill never leaves
half a line). An object store has no append: s3fs emulates one by downloading and uploading the
whole object again, five requests a record (~21 ms each on loopback moto, more on S3), on rank
0's step while the other ranks wait at the next all-reduce, and quadratic in bytes over a run.
There the records are kept in memory and the whole log goes up as one PUT at each checkpoint,
every `flush_s` seconds and at the end.

A run that starts (or resumes at step N) drops the records of steps after N that a killed run
left behind: they are logged again as they are rerun (with equal losses: resume is exact), so
the log holds each step once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from uvd import storage

log = logging.getLogger(__name__)


class RunLog:
    def __init__(self, out: str, enabled: bool, resumed_at: int = 0, flush_s: float = 60.0) -> None:
        self.enabled, self.url, self.flush_s = enabled, storage.join(out, "log.jsonl"), flush_s
        self.fs, self.path = storage.fs_and_path(self.url)
        self.appends = storage.uses_rename(self.fs)  # POSIX-like: a real append
        self._lines: list[str] = []
        self._unsent = False
        self._sent_at = time.monotonic()
        if not enabled:
            return
        if self.appends:
            self.fs.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if not self.fs.exists(self.path):
            return
        lines = self.fs.cat_file(self.path).decode().splitlines(keepends=True)
        kept = [line for line in lines if _step(line) <= resumed_at]
        if len(kept) < len(lines):  # a killed run's steps past the checkpoint: they run again
            storage.write_bytes(self.url, "".join(kept).encode())
            log.info(f"train: {len(lines) - len(kept)} record(s) after step {resumed_at} dropped from {self.url}")
        if not self.appends:
            self._lines = kept

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(record) + "\n"
        if self.appends:
            with self.fs.open(self.path, "a") as f:
                f.write(line)
        else:
            self._lines.append(line)
            self._unsent = True
            if time.monotonic() - self._sent_at >= self.flush_s:
                self.flush()
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()]
        log.info("train: " + " | ".join(parts))

    def flush(self) -> None:
        """Upload the whole log to an object store (one PUT) if it has records not yet there."""
        if self.enabled and self._unsent:
            storage.write_bytes(self.url, "".join(self._lines).encode())
            self._unsent = False
            self._sent_at = time.monotonic()


def _step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a torn last line from a kill mid-write: never kept
        return 1 << 62
