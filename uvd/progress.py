"""Progress of a long job (units built, shards tokenized, steps trained), drawn by tqdm.

Three modes, chosen once by the CLI (`configure`): "bar" redraws a tqdm bar on a terminal;
"lines" logs one line every `interval_s` (CI, `ray job submit`, a log file); "off" (`-q`)
shows nothing, the command's final summary being all that is printed. Each shows units
done/total, items/s, failures so far and the ETA.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

MODES = ("bar", "lines", "off")
_mode = "lines"  # a program that configures logging but not progress still gets lines
_interval_s = 10.0


def configure(mode: str, interval_s: float = 10.0) -> None:
    global _mode, _interval_s
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: one of {', '.join(MODES)}")
    _mode, _interval_s = mode, max(0.0, float(interval_s))


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Units done out of `total`, with items processed and failures; a context manager."""

    def __init__(self, total: int, desc: str, unit: str = "unit") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.units = self.items = self.failed = 0
        self.mode = _mode
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._logged = -1  # units count at the last line
        self._last_line = self._t0
        self._bar: Any = None
        self._ticker: threading.Thread | None = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        elif self.mode == "lines" and _interval_s > 0:
            # A line every interval even while no unit finishes: a long unit does not look like a hang.
            self._ticker = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)
            self._ticker.start()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _rate(self) -> float:
        return self.items / max(time.monotonic() - self._t0, 1e-9)

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        eta = elapsed / self.units * (self.total - self.units) if self.units else None
        pct = f" ({100 * self.units / self.total:.0f}%)" if self.total else ""
        return (f"{self.desc}: {self.units}/{self.total} {self.unit}s{pct}, {self.items} items, "
                f"{self._rate():.1f} items/s, {self.failed} failed, elapsed {_clock(elapsed)}, "
                f"ETA {_clock(eta) if eta is not None else '?'}")

    def _log_line(self) -> None:
        self._logged, self._last_line = self.units, time.monotonic()
        logger.info(self.line())

    def _tick(self) -> None:
        while not self._closed.wait(_interval_s):
            with self._lock:
                if time.monotonic() - self._last_line >= _interval_s:
                    self._log_line()

    def update(self, units: int = 1, items: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.units += units
            self.items += items
            self.failed += failed
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self._rate():.1f} items/s, {self.failed} failed", refresh=False)
                self._bar.update(units)
            elif self.mode == "lines" and time.monotonic() - self._last_line >= _interval_s:
                self._log_line()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            elif self.mode == "lines" and self._logged != self.units:
                self._log_line()  # the final state, unless the last line already showed it


def progress(total: int, desc: str, unit: str = "unit") -> Progress:
    return Progress(total, desc, unit)
