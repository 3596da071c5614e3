"""Listing input files through fsspec (local paths, s3://, gs://, memory://): a folder tree
(first sub-folder = class label) or a list file.

Ids are paths relative to the root, so a local copy and an object-store copy of one dataset
give the same ids, hence the same sentences. Paths handed on are URLs of the root's own
filesystem (plain paths for local roots).
"""
from __future__ import annotations

import posixpath

from sources.remote import is_remote, read_bytes
from uvd.errors import BadInput, ConfigError
from uvd.storage import fs_and_path


def _as_url(fs: object, url: str, path: str) -> str:
    return fs.unstrip_protocol(path) if is_remote(url) else path  # type: ignore[attr-defined]


def suffix_of(name: str) -> str:
    """The lowercased extension of a file name, dot included: `..jpg` and `...jpg` end in `.jpg`
    (posixpath.splitext takes leading dots for a hidden file's name and would say none)."""
    base = posixpath.basename(name)
    return "." + base.rsplit(".", 1)[1].lower() if "." in base else ""


def printable_id(name: str) -> str:
    """A name as an item id: a file name that is not UTF-8 (Python holds its bytes as lone
    surrogates, which Parquet cannot store) keeps its bytes as `\\xNN` escapes; the file is read
    under its real name."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
        if wanted is None or suffix_of(rel) in wanted:
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


# A list file, label map or category file read whole: larger ones are refused by name.
MAX_TEXT_BYTES = 256 << 20


def read_text(url: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small text file (list file, category map) as str; ConfigError naming the file when it is
    larger than `max_bytes`, not a regular file, or not UTF-8."""
    try:
        data = read_bytes(url, max_bytes)
    except BadInput as err:
        raise ConfigError(f"{url}: cannot read ({err})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{url}: not UTF-8 text (byte {err.start})") from None


def list_inputs(root: str | None, list_file: str | None, suffixes: list[str],
                labels: bool = True) -> list[tuple[str, str, str]]:
    """(item_id, path, label) sorted by item id. The id is the path relative to `root`, or as
    written in the list file (one path per line, relative to the list file, optionally
    "path<TAB>label"; blank lines and # comments are skipped). A relative line is checked to stay
    under the list file's folder when it is read (`sources.remote.list_entry`), not here, so a bad
    line fails its own item."""
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
            entries.append((printable_id(rel), url, printable_id(parts[0]) if labels and len(parts) > 1 else ""))
    return sorted(entries)
