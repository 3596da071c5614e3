"""Annotation files (COCO, MPII, PoseTrack JSON) read whole under a byte cap, and the names
inside them turned into paths under the dataset root.

These files are parsed once, on the driver, at plan time: units carry compact records of
their own items, so no worker holds a whole annotation file (a Python parse of JSON costs
several times its size). A file that cannot be used is a `ConfigError` naming it; the source
decides whether that stops the build (no usable file) or becomes one `bad_file` audit row
(docs/hostile_inputs.md, rule 5).
"""
from __future__ import annotations

import json
import posixpath
from typing import Any

from sources.remote import read_bytes, resolve_under
from uvd.errors import BadInput, ConfigError

# An annotation file is read whole: bigger ones are refused before a byte is read. COCO's
# instances_train2017 is 448 MB and LVIS v1 train about 1.1 GB; raise it per dataset with the
# source's `max_annotation_bytes`.
MAX_ANNOTATION_BYTES = 2 << 30


def read_json(path: str, who: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> Any:
    """A JSON annotation file; ConfigError naming `who` and the file when it is missing, not a
    regular file, over `max_bytes`, not UTF-8, malformed, truncated or nested too deep."""
    try:
        data = read_bytes(path, max_bytes)
    except BadInput as err:
        raise ConfigError(f"{who}: cannot use {path}: {err}") from None
    try:
        return json.loads(data)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{who}: {path} is not UTF-8 text: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{who}: {path} is not valid JSON (truncated or malformed): {err}") from None
    except RecursionError:
        raise ConfigError(f"{who}: {path} is nested too deep to be an annotation file") from None


def file_labels(paths: list[str]) -> dict[str, str]:
    """A short name per annotation file for audit ids: its base name, or the path where two share one."""
    names = [posixpath.basename(str(p).rstrip("/")) for p in paths]
    return {p: (n if names.count(n) == 1 else str(p)) for p, n in zip(paths, names)}


def bad_file_entry(label: str, err: Exception) -> list[str]:
    """The one audit row of an annotation file that cannot be planned (docs/hostile_inputs.md, rule 5)."""
    return [f"bad_file:{label}", f"bad_file: {label}: {err}"]


def safe_text(text: str) -> str:
    """`text` with anything that is not UTF-8 (lone surrogates from a JSON escape or a byte file
    name) escaped: audit ids and provenance go into Parquet strings, which must be UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def contained(root: str, name: Any) -> str:
    """The URL of `name` (from inside an annotation file) under `root`; BadInput("bad_path") when
    it is not a UTF-8 relative path that stays under `root` (sources/remote.resolve_under)."""
    if isinstance(name, str):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("bad_path", f"{safe_text(name)!r}: not a UTF-8 name") from None
    return resolve_under(root, name)


def is_int(value: Any) -> bool:
    """An integer id or size as JSON gives it (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)
