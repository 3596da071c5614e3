"""Listing input files: a folder tree (first sub-folder = class label) or a list file."""
from __future__ import annotations

from pathlib import Path


def list_inputs(root: str | None, list_file: str | None, suffixes: list[str],
                labels: bool = True) -> list[tuple[str, str, str]]:
    """(item_id, path, label) sorted by item id. The id is the path relative to `root`, or as
    written in the list file (one path per line, relative to the list file, optionally
    "path<TAB>label"; blank lines and # comments are skipped)."""
    entries = []
    if list_file:
        base = Path(list_file).parent
        for line in Path(list_file).read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            rel, _, label = line.partition("\t")
            p = Path(rel.strip())
            entries.append((rel.strip(), str(p if p.is_absolute() else base / p), label.strip()))
    elif root:
        wanted = {s.lower() for s in suffixes}
        for p in Path(root).rglob("*"):
            if p.is_file() and p.suffix.lower() in wanted:
                rel = p.relative_to(root)
                entries.append((rel.as_posix(), str(p), rel.parts[0] if labels and len(rel.parts) > 1 else ""))
    return sorted(entries)
