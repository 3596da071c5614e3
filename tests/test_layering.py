"""The import graph follows the arrows of the README's layout table: the core of `uvd/` names no package above it,
plug-in packages import only what lies below them, and nothing imports `demo/` or `tests/`.

Imports are read from the source (ast), wherever they are: at the top of a module, inside a
function (a lazy import is still an arrow), or as `importlib.import_module("…")` with a literal.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPPER = {"sources", "renderers", "sentence_builders", "tokenize_job", "train", "demo", "tests"}
# package → the project packages it may import (besides itself and the core of uvd)
ALLOWED = {"sources": set(), "renderers": set(), "sentence_builders": {"renderers"},
           "tokenize_job": set(), "train": {"tokenize_job"}}
CLI_LAYER = ("uvd.cli",)  # the only part of uvd that names upper packages
ENTRY_POINTS = {"uvd/__main__.py"}  # `python -m uvd` is the CLI


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (absolute names; the code has no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.update([node.module or ""] + [f"{node.module}.{a.name}" for a in node.names])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value.split(":")[0])
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def core_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "uvd").rglob("*.py")
                  if not p.relative_to(ROOT).as_posix().startswith("uvd/cli/")
                  and p.relative_to(ROOT).as_posix() not in ENTRY_POINTS)


def test_the_scan_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\n\ndef f():\n    from sources.coco import CocoSource\n"
                     "    return importlib.import_module('train.loop')\n")
    assert {"sources.coco", "train.loop"} <= imported_modules(probe)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_imports_nothing_above_it(path: Path) -> None:
    names = imported_modules(path)
    upward = sorted(n for n in names if top(n) in UPPER)
    cli = sorted(n for n in names if n.startswith(CLI_LAYER))
    assert not upward, f"{path.relative_to(ROOT)} imports upper packages: {upward}"
    assert not cli, f"{path.relative_to(ROOT)} imports the CLI layer: {cli}"


def test_core_is_most_of_uvd() -> None:
    # The scan above must cover the engine, not just a few files.
    names = {p.relative_to(ROOT).as_posix() for p in core_modules()}
    assert {"uvd/records.py", "uvd/registry.py", "uvd/runner.py", "uvd/unit.py", "uvd/manifest.py",
            "uvd/progress.py", "uvd/validate.py", "uvd/shard_summary.py"} <= names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_what_lies_below(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if (top(name) in UPPER and top(name) != package and top(name) not in ALLOWED[package]) \
                    or name.startswith(CLI_LAYER):
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, "imports against the arrows:\n" + "\n".join(bad)


def test_sources_holds_dataset_readers_only() -> None:
    assert not list((ROOT / "sources").glob("*_demo.py"))
    assert not list((ROOT / "sources").glob("*demo*"))
