"""fsspec access and the commit protocol: write under a temporary name, then move into place."""
from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import uuid
from typing import IO, Any, Iterator

import fsspec
from fsspec.core import url_to_fs


def fs_and_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(url)
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join onto a URL or a path (keeps `s3://bucket/…` intact)."""
    return posixpath.join(base.rstrip("/"), *parts)


@contextlib.contextmanager
def atomic_open(url: str) -> Iterator[IO[bytes]]:
    """Open `url` for writing; it appears under its name only when the block succeeds.

    A crash leaves at most a `.tmp-…` file, never a half-written file under the real name.
    """
    fs, path = fs_and_path(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def write_bytes(url: str, data: bytes) -> None:
    with atomic_open(url) as f:
        f.write(data)


def write_json(url: str, obj: Any) -> None:
    write_bytes(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


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


def remove_stale_temps(url: str) -> None:
    """Remove temporaries a crashed earlier attempt left beside `url`."""
    fs, path = fs_and_path(url)
    for stale in fs.glob(f"{path}.tmp-*"):
        with contextlib.suppress(Exception):
            fs.rm(stale)


def glob(url: str, pattern: str) -> list[str]:
    """Paths under `url` matching `pattern`, sorted, as URLs of the same filesystem."""
    fs, path = fs_and_path(url)
    found = sorted(fs.glob(join(path, pattern)))
    if "://" not in url or url.startswith("file://"):
        return found
    return [fs.unstrip_protocol(p) for p in found]
