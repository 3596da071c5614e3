"""Look sources and builders up by name, so a config can say `source: coco` / `builder: pairs`.

Names resolve, in order, through the registered tables (modules whose `BUILTIN` dict maps a
name to "module:Class"; the CLI layer registers the project's own, `sources` and
`sentence_builders`, see uvd/cli/plugins.py), the entry-point groups `uvd.sources` /
`uvd.builders` of any installed package, and finally a dotted `module:Class` written in the
config. The core names no plug-in package: tables are registered as module names, which
travel to Ray workers as plain data (`tables()` in the driver, `use_tables()` in the task).
Nothing is imported until a name is looked up.
"""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from uvd.errors import ConfigError

_GROUPS = {"source": "uvd.sources", "builder": "uvd.builders"}
_TABLES: dict[str, list[str]] = {kind: [] for kind in _GROUPS}


def register_table(kind: str, module: str) -> None:
    """Add `module.BUILTIN` (name → "module:Class") to the names of `kind`; later tables win."""
    if kind not in _GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}; one of {', '.join(_GROUPS)}")
    if module not in _TABLES[kind]:
        _TABLES[kind].append(module)
        lookup.cache_clear()  # a new table may shadow a name already looked up


def tables() -> dict[str, list[str]]:
    """The registered tables, as plain data to hand to another process."""
    return {kind: list(mods) for kind, mods in _TABLES.items()}


def use_tables(registered: dict[str, list[str]]) -> None:
    """Register in this process (a Ray worker) the tables `tables()` returned in another."""
    for kind, mods in registered.items():
        for module in mods:
            register_table(kind, module)


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _builtin(kind: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for module in _TABLES[kind]:
        merged.update(getattr(importlib.import_module(module), "BUILTIN"))
    return merged


@functools.lru_cache(maxsize=None)  # a unit looks its source and builder up; scanning entry points costs ms
def lookup(kind: str, name: str) -> Any:
    group = _GROUPS[kind]
    builtin = _builtin(kind)
    if name in builtin:
        return _load(builtin[name])
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    if ":" in name:
        try:
            return _load(name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"{kind} {name!r}: cannot import ({err})") from None
    known = sorted(builtin) + sorted(ep.name for ep in entry_points(group=group))
    hint = "" if _TABLES[kind] else " (no table registered: run through `uvd`, or call uvd.cli.plugins.register_builtin())"
    raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(known) or 'none'}{hint}")


def names(kind: str) -> list[str]:
    group = _GROUPS[kind]
    return sorted(set(_builtin(kind)) | {ep.name for ep in entry_points(group=group)})
