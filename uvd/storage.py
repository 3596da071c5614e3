"""fsspec access and the commit protocol: a file appears under its name whole or not at all.

On a POSIX filesystem it is written to a temporary name and moved into place; on an object store
it is one PUT (or multipart upload), which the store makes visible only when it completes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Iterable, Iterator, NamedTuple, TypeVar

import fsspec
from fsspec.core import url_to_fs

from uvd import faults

T = TypeVar("T")
R = TypeVar("R")


def fs_and_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(url)
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join onto a URL or a path (keeps `s3://bucket/…` intact)."""
    return posixpath.join(base.rstrip("/"), *parts)


def uses_rename(fs: fsspec.AbstractFileSystem) -> bool:
    """POSIX (and the in-memory test filesystem, whose open files are visible at once): temp + move.

    Everything else is treated as an object store, where a move is a copy plus a delete.
    """
    return bool({"file", "local", "memory"} & set(_protocols(fs)))


TEMP_MARK = ".tmp-"  # a temporary's name: <final name>.tmp-<run id>-<random>
_RUN_ID = {"id": os.environ.get("UVD_RUN_ID", "")}


def set_run_id(run: str) -> None:
    """Name this process's temporaries after the build `run` (the driver sets it, and each task):
    a sweep can then tell its own run's leftovers from another live build's files."""
    _RUN_ID["id"] = run


def run_id() -> str:
    """The run id temporaries of this process carry ("norun" when no build set one)."""
    return _RUN_ID["id"] or "norun"


def temp_run_id(name: str) -> str | None:
    """The run id in a temporary's name (None for a name that is not one, "" for an older unnamed one)."""
    if TEMP_MARK not in name:
        return None
    tail = name.rsplit(TEMP_MARK, 1)[1]
    return tail.rsplit("-", 1)[0] if "-" in tail else ""


@contextlib.contextmanager
def atomic_open(url: str) -> Iterator[IO[bytes]]:
    """Open `url` for writing; it appears under its name only when the block succeeds.

    A crash leaves at most a `.tmp-…` file on POSIX, and on an object store an unfinished
    multipart upload, which is not an object: never a half-written file under the real name.
    """
    fs, path = fs_and_path(url)
    if not uses_rename(fs):
        yield from _object_store_open(fs, path)
        return
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}{TEMP_MARK}{run_id()}-{uuid.uuid4().hex[:12]}"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        faults.maybe_die("before_publish")
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def _object_store_open(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO[bytes]]:
    # fsspec's buffered file commits on close(), which `with` calls even on an exception; so on
    # failure the upload is discarded (s3fs aborts the multipart upload) and close() is skipped.
    f = fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        with contextlib.suppress(Exception):
            if hasattr(f, "discard"):
                f.discard()
        with contextlib.suppress(Exception):
            f.closed = True
        raise
    faults.maybe_die("before_publish")
    f.close()


def write_bytes(url: str, data: bytes) -> None:
    with atomic_open(url) as f:
        f.write(data)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def write_json(url: str, obj: Any) -> None:
    write_bytes(url, _json_bytes(obj))


def write_json_listed(url: str, obj: Any) -> Listed | None:
    """write_json, returning the file's size and version as a listing (list_files) will show them,
    so that whoever keeps track need not list it again; None where the store does not say."""
    data = _json_bytes(obj)
    fs, path = fs_and_path(url)
    if not uses_rename(fs) and _is_s3(fs) and len(data) < 5 << 20:
        reply = fs.pipe_file(path, data)  # one PUT (whole or not at all); its reply carries the ETag
        etag = reply.get("ETag") if isinstance(reply, dict) else None
        return Listed(len(data), str(etag)) if etag else None
    write_bytes(url, data)
    if not uses_rename(fs):
        return None
    if _is_local(fs):
        return _posix_listed(os.stat(path))
    return _info_listed(fs.info(path))


def remove_file(url: str) -> None:
    """Delete `url`; one that is not there (or vanished meanwhile) is fine."""
    fs, path = fs_and_path(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def listed_if_free(url: str) -> Listed | None:
    """What a listing would show of `url`, where finding out costs no request (local disk, memory);
    None on object stores, and for a file that is not there."""
    fs, path = fs_and_path(url)
    if not uses_rename(fs):
        return None
    try:
        return _posix_listed(os.stat(path)) if _is_local(fs) else _info_listed(fs.info(path))
    except FileNotFoundError:
        return None


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    return "s3" in _protocols(fs)


def read_json(url: str) -> Any:
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def exists(url: str) -> bool:
    fs, path = fs_and_path(url)
    return fs.exists(path)


def sha256_of(url: str) -> tuple[str, int]:
    fs, path = fs_and_path(url)
    h = hashlib.sha256()
    n = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


class Listed(NamedTuple):
    size: int
    version: str  # changes whenever the file is rewritten


def list_files(url: str, prefixes: list[str] | None = None, suffix: str | tuple[str, ...] = "") -> dict[str, Listed]:
    """Every file under `url` (recursively) whose name ends with `suffix` (or one of them), by its name
    relative to `url`.

    One paginated listing (a LIST per 1000 keys on S3), however many files there are; on an
    object store, `prefixes` (of the names under `url`) split it into listings run in parallel.
    The version is the ETag (S3; gcsfs spells it `etag` and adds `generation`, which changes on every
    write) or VersionId on object stores, mtime and inode on POSIX (a temp + move makes a new inode).
    Only matching entries are kept, compactly: a listing of 10^5 units stays small.
    """
    fs, path = fs_and_path(url)
    base = path.rstrip("/") + "/"
    fs.invalidate_cache(path)  # other processes (Ray workers) write here: never answer from a cached listing
    if uses_rename(fs):
        return _list_posix(fs, base, suffix)

    def entry(name: str, info: dict[str, Any]) -> Listed | None:
        if not (name.endswith(suffix) and name.startswith(base) and info.get("type", "file") == "file"):
            return None
        return Listed(int(info.get("size") or 0), _object_version(info))

    def find(prefix: str) -> dict[str, Listed]:
        return {name[len(base):]: e for name, e in _list_objects(fs, path, prefix, entry)}

    if prefixes and len(prefixes) > 1:
        out: dict[str, Listed] = {}
        for part in parallel_map(find, prefixes):
            out.update(part)
        return out
    return find("")


def _object_version(info: dict[str, Any]) -> str:
    """A listed object's version: S3's ETag/VersionId, gcsfs's generation (or etag); "" if none."""
    for key in ("ETag", "VersionId", "generation", "etag"):
        if info.get(key) not in (None, ""):
            return str(info[key])
    return ""


def _list_objects(fs: fsspec.AbstractFileSystem, path: str, prefix: str,
                  entry: Callable[[str, dict[str, Any]], T | None]) -> list[tuple[str, T]]:
    """(name, entry(name, info)) of the objects under `path` whose relative name starts with
    `prefix`, for those where `entry` is not None.

    On S3 the LIST pages are reduced to entries as they arrive: `fs.find` would hold an info
    dict (about 1 KB) for every object, data shards and audits included, and fill s3fs's
    listing cache. Other stores go through `find`.
    """
    kept: list[tuple[str, T]] = []

    def add(name: str, info: dict[str, Any]) -> None:
        e = entry(name, info)
        if e is not None:
            kept.append((name, e))

    try:
        if _is_s3(fs):
            from fsspec.asyn import sync

            bucket, key, _ = fs.split_path(path)

            async def pages() -> None:
                async for info in fs._iterdir(bucket, delimiter="", prefix=(f"{key.rstrip('/')}/" if key else "") + prefix):
                    add(info["name"], info)

            sync(fs.loop, pages)
        else:
            for name, info in fs.find(path, detail=True, **({"prefix": prefix} if prefix else {})).items():
                add(name, info)
    except FileNotFoundError:
        return []
    return kept


def list_names(url: str) -> list[str]:
    """Names of the files under `url` (recursively), relative to it, sorted: one listing, no details."""
    fs, path = fs_and_path(url)
    if _is_local(fs):
        return sorted(rel for rel, _ in _walk_local(path))
    base = path.rstrip("/") + "/"
    fs.invalidate_cache(path)
    try:
        return sorted(n[len(base):] for n in fs.find(path, detail=False) if n.startswith(base))
    except FileNotFoundError:
        return []


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in _protocols(fs)


def _walk_local(root: str, suffix: str | tuple[str, ...] = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(name relative to `root`, entry) of every file below it ending with `suffix`; os.scandir,
    streamed, keeps a 10^5-file folder cheap."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(f"{rel}/{e.name}" if rel else e.name)
                elif e.name.endswith(suffix):
                    yield (f"{rel}/{e.name}" if rel else e.name), e


def _list_posix(fs: fsspec.AbstractFileSystem, base: str, suffix: str | tuple[str, ...]) -> dict[str, Listed]:
    out = {}
    if _is_local(fs):
        for name, e in _walk_local(base, suffix):
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed between the listing and now
                continue
            out[name] = _posix_listed(st)
        return out
    try:
        names = fs.find(base, detail=False)
    except FileNotFoundError:
        return {}
    for name in names:
        if name.endswith(suffix) and name.startswith(base):
            try:
                st = fs.info(name)
            except FileNotFoundError:  # removed between the listing and now
                continue
            if st.get("type", "file") == "file":
                out[name[len(base):]] = _info_listed(st)
    return out


def _posix_listed(st: os.stat_result) -> Listed:
    return Listed(st.st_size, f"{st.st_mtime_ns}:{st.st_ino}")  # a temp + move makes a new inode


def _info_listed(info: dict[str, Any]) -> Listed:
    return Listed(int(info.get("size") or 0), f"{info.get('mtime', info.get('created', ''))}:{info.get('ino', '')}")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], threads: int = 16) -> list[R]:
    """`fn` over `items` on a bounded thread pool (object-store reads are latency, not CPU)."""
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def glob(url: str, pattern: str) -> list[str]:
    """Paths under `url` matching `pattern`, sorted, as URLs of the same filesystem."""
    fs, path = fs_and_path(url)
    found = sorted(fs.glob(join(path, pattern)))
    if "://" not in url or url.startswith("file://"):
        return found
    return [fs.unstrip_protocol(p) for p in found]
