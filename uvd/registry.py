"""Look sources and builders up by name, so a config can say `source: coco` / `builder: pairs`.

Names resolve, in order, through the built-in tables (`sources.BUILTIN`,
`sentence_builders.BUILTIN`), the entry-point groups `uvd.sources` / `uvd.builders` of any
installed package, and finally a dotted `module:Class` written in the config. Nothing is
imported until a name is looked up.
"""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from uvd.errors import ConfigError

_KINDS = {"source": ("sources", "uvd.sources"), "builder": ("sentence_builders", "uvd.builders")}


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=None)  # a unit looks its source and builder up; scanning entry points costs ms
def lookup(kind: str, name: str) -> Any:
    package, group = _KINDS[kind]
    builtin = getattr(importlib.import_module(package), "BUILTIN")
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
    raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(known)}")


def names(kind: str) -> list[str]:
    package, group = _KINDS[kind]
    builtin = getattr(importlib.import_module(package), "BUILTIN")
    return sorted(set(builtin) | {ep.name for ep in entry_points(group=group)})
