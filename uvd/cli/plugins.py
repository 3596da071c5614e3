"""The project's own plug-ins, registered by name with the core's registry.

The CLI registers them before any command runs; a program that drives `uvd.runner.build`
itself (a test, a benchmark, a notebook) calls `register_builtin()` first.
"""
from __future__ import annotations

from uvd import registry

# kind → modules whose BUILTIN dict maps a name to "module:Class"
BUILTIN_TABLES: dict[str, list[str]] = {"source": ["sources"], "builder": ["sentence_builders"]}


def register_builtin() -> None:
    registry.use_tables(BUILTIN_TABLES)
