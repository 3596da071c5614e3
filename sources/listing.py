"""Listing input files through fsspec (local paths, s3://, gs://, memory://): a folder tree
(first sub-folder = class label) or a list file.

Ids are paths relative to the root, so a local copy and an object-store copy of one dataset
give the same ids, hence the same sentences. Paths handed on are URLs of the root's own
filesystem (plain paths for local roots).
"""
from __future__ import annotations

import posixpath

from uvd.storage import fs_and_path


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _as_url(fs: object, url: str, path: str) -> str:
    return fs.unstrip_protocol(path) if is_remote(url) else path  # type: ignore[attr-defined]


def list_files(root: str, suffixes: list[str] | set[str] | None = None,
               top_level: bool = False) -> list[tuple[str, str]]:
    """(path relative to root, URL) of every file under root (with one of `suffixes`), sorted;
    `top_level`: the files directly in root only, without listing its sub-folders."""
    fs, base = fs_and_path(root)
    base = base.rstrip("/")
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None
    found = []
    for p in fs.find(base, maxdepth=1 if top_level else None):
        rel = p[len(base) + 1:] if p.startswith(base + "/") else posixpath.basename(p)
        if wanted is None or posixpath.splitext(rel)[1].lower() in wanted:
            found.append((rel, _as_url(fs, root, p)))
    return sorted(found)


def list_dirs(root: str) -> list[tuple[str, str]]:
    """(name, URL) of the immediate sub-folders of root, sorted; none when root is no folder."""
    fs, base = fs_and_path(root)
    if not fs.isdir(base):
        return []
    dirs = [p for p in fs.ls(base, detail=True) if p["type"] == "directory"]
    return sorted((posixpath.basename(d["name"].rstrip("/")), _as_url(fs, root, d["name"].rstrip("/"))) for d in dirs)


def is_dir(url: str) -> bool:
    fs, path = fs_and_path(url)
    return fs.isdir(path)


def read_text(url: str) -> str:
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        return f.read().decode("utf-8")


def list_inputs(root: str | None, list_file: str | None, suffixes: list[str],
                labels: bool = True) -> list[tuple[str, str, str]]:
    """(item_id, path, label) sorted by item id. The id is the path relative to `root`, or as
    written in the list file (one path per line, relative to the list file, optionally
    "path<TAB>label"; blank lines and # comments are skipped)."""
    entries = []
    if list_file:
        base = posixpath.dirname(list_file)
        for line in read_text(list_file).splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            rel, _, label = line.partition("\t")
            rel = rel.strip()
            absolute = rel.startswith("/") or "://" in rel
            entries.append((rel, rel if absolute else posixpath.join(base, rel), label.strip()))
    elif root:
        for rel, url in list_files(root, suffixes):
            parts = rel.split("/")
            entries.append((rel, url, parts[0] if labels and len(parts) > 1 else ""))
    return sorted(entries)
