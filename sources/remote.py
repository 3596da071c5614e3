"""Reading one input item's files through fsspec, so every source takes s3://, gs://, memory://
and local paths alike. Failures are the item's: `BadInput("io", "<url>: <why>")`.

Small files (images, annotations, label maps) are read as bytes. Files a library must open
by path (videos for the decoder) are copied to a local temporary file when remote, under a
size cap, and removed when the item is done.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from typing import Iterator

from sources.listing import is_remote
from uvd.errors import BadInput
from uvd.storage import fs_and_path


def _io(url: str, err: Exception) -> BadInput:
    why = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return BadInput("io", f"{url}: {why}")


def read_bytes(url: str) -> bytes:
    """The whole file; a missing, unreadable or forbidden object is BadInput("io")."""
    try:
        fs, path = fs_and_path(url)
        return fs.cat_file(path)
    except BadInput:
        raise
    except Exception as err:  # fsspec back-ends raise OSError subclasses, botocore and aiohttp errors
        raise _io(url, err) from None


def size_of(url: str) -> int:
    try:
        fs, path = fs_and_path(url)
        return int(fs.size(path))
    except Exception as err:
        raise _io(url, err) from None


@contextlib.contextmanager
def local_copy(url: str, max_bytes: int) -> Iterator[str]:
    """A local path holding `url`: the path itself when local, else a temporary copy (removed
    after). Zero-byte files are `empty`; remote files over `max_bytes` are `too_large`."""
    size = size_of(url)
    if size == 0:
        raise BadInput("empty", "zero-byte file")
    if not is_remote(url):
        yield fs_and_path(url)[1]
        return
    if size > max_bytes:
        raise BadInput("too_large", f"{url}: {size} bytes > staging cap {max_bytes}")
    tmpdir = tempfile.mkdtemp(prefix="uvd-stage-")
    try:
        local = os.path.join(tmpdir, posixpath.basename(url.rstrip("/")) or "item")
        try:
            fs, path = fs_and_path(url)
            with fs.open(path, "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except Exception as err:
            raise _io(url, err) from None
        yield local
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
