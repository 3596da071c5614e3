"""One logging configuration for every entry point (`uvd …`, `python -m train`).

Messages go to stderr; what a command produces (tables, summaries, paths) goes to stdout and
is printed by the command. Verbosity: -1 (`-q`: warnings only), 0 (progress and steps), 1
(`-v`: debug, and Ray Data's own progress bars and logs).
"""
from __future__ import annotations

import logging
import os
import sys

class _TqdmHandler(logging.StreamHandler):
    """Writes through tqdm, so a log line does not tear a progress bar drawn on the same terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure(verbosity: int = 0, loggers: tuple[str, ...] = ("uvd",)) -> None:
    """Set the root handler and the level of `loggers` (the caller's packages: loggers are named
    after their modules); third-party loggers stay at WARNING, Ray Data quiet unless verbose."""
    handler = _TqdmHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname).1s %(name)s: %(message)s" if verbosity > 0 else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt, "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbosity > 0 else logging.WARNING, handlers=[handler], force=True)
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    if verbosity <= 0:
        # Read by Ray Data when it is imported, on the driver that runs the dataset.
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("RAY_DATA_VERBOSE_PROGRESS", "0")
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
