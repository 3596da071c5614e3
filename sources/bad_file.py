"""The plan-time rule for a metadata or annotation file that cannot be read (docs/hostile_inputs.md):
the file is reported by name, the good files are built, and the bad one gets one unit whose read
yields one audit row (`bad_file:<name>`, reason `bad_file: <name>: <why>`). When no file of a
source can be planned, the build stops before it starts with a ConfigError (exit 2) naming them.
"""
from __future__ import annotations

import logging
import posixpath
from typing import Any, Callable, Iterable, Iterator

from uvd.errors import ConfigError
from uvd.records import Failed

log = logging.getLogger(__name__)

BAD_FILE = "bad_file"


def why(err: BaseException) -> str:
    """One line saying what is wrong with a file, without a traceback."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


def bad_file_unit(path: str, reason: str) -> dict[str, Any]:
    return {BAD_FILE: posixpath.basename(path.rstrip("/")) or path, "reason": reason}


def is_bad_file(payload: dict[str, Any]) -> bool:
    return BAD_FILE in payload


def bad_file_rows(payload: dict[str, Any]) -> Iterator[Failed]:
    """The one audit row of a file that could not be planned."""
    name = payload[BAD_FILE]
    yield Failed(f"{BAD_FILE}:{name}", f"{BAD_FILE}: {name}: {payload['reason']}")


def plan_files(source: str, paths: Iterable[str],
               plan_one: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Units of every file `plan_one` can plan; a file it cannot (any exception, a ConfigError
    included) becomes one bad-file unit and a warning. ConfigError when every file fails."""
    units: list[dict[str, Any]] = []
    bad: list[str] = []
    paths = list(paths)
    for path in paths:
        try:
            units += plan_one(path)
        except Exception as err:
            reason = str(err) if isinstance(err, ConfigError) else why(err)
            log.warning("%s: skipping %s, which cannot be read: %s", source, path, reason)
            bad.append(f"{path}: {reason}")
            units.append(bad_file_unit(path, reason))
    if paths and len(bad) == len(paths):
        raise ConfigError(f"{source}: no input file can be read:\n  " + "\n  ".join(bad))
    return units
