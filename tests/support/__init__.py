"""Test fixtures shared by tests and benchmarks: cluster helpers, drill sources, generated inputs.

Importable as `tests.support` from the repository root (pytest's `pythonpath` puts it there).
"""
