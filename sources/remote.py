"""Reading one input item's files through fsspec, so every source takes s3://, gs://, memory://
and local paths alike. Failures are the item's: `BadInput("io", "<url>: <why>")`.

Small files (images, annotations, label maps) are read as bytes. Files a library must open
by path (videos for the decoder) are copied to a local temporary file when remote, under a
size cap, and removed when the item is done.
"""
from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
import tempfile
from typing import Iterator

from uvd.errors import BadInput
from uvd.storage import fs_and_path


def is_remote(url: str) -> bool:
    """An object-store (or other fsspec) URL, not a local path or file:// URL."""
    return "://" in url and not url.startswith("file://")


def _io(url: str, err: Exception) -> BadInput:
    why = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return BadInput("io", f"{url}: {why}")


# One image, mask, depth map or side file of one item. Larger files are refused (`too_large`)
# before they are read: nothing a source reads per item is held whole beyond this.
MAX_ITEM_BYTES = 64 << 20


def read_bytes(url: str, max_bytes: int = MAX_ITEM_BYTES) -> bytes:
    """The whole file, at most `max_bytes`; a missing, unreadable or forbidden object is
    BadInput("io"), a FIFO, device, socket or folder is BadInput("not_a_file") (checked before
    any byte is read, so a FIFO never blocks), a bigger file is BadInput("too_large")."""
    try:
        fs, path = fs_and_path(url)
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            return _read_local(url, path, max_bytes)
        size = int(fs.size(path) or 0)
        if size > max_bytes:
            raise BadInput("too_large", f"{url}: {size} bytes > cap {max_bytes}")
        data = fs.cat_file(path, start=0, end=max_bytes + 1)
        if len(data) > max_bytes:  # the object grew between the size and the read
            raise BadInput("too_large", f"{url}: over cap {max_bytes} bytes")
        return data
    except BadInput:
        raise
    except Exception as err:  # fsspec back-ends raise OSError subclasses, botocore and aiohttp errors
        raise _io(url, err) from None


def _read_local(url: str, path: str, max_bytes: int) -> bytes:
    # O_NONBLOCK: opening a FIFO with no writer would block; fstat on the open descriptor then
    # decides (a symlink swapped after a stat cannot slip a device in).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno in (errno.ENXIO, errno.EISDIR):
            raise BadInput("not_a_file", f"{url}: not a regular file") from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadInput("not_a_file", f"{url}: not a regular file")
        if st.st_size > max_bytes:
            raise BadInput("too_large", f"{url}: {st.st_size} bytes > cap {max_bytes}")
        chunks, n = [], 0
        while chunk := f.read(min(1 << 20, max_bytes + 1 - n)):
            chunks.append(chunk)
            n += len(chunk)
            if n > max_bytes:  # grew since the stat
                raise BadInput("too_large", f"{url}: over cap {max_bytes} bytes")
        return b"".join(chunks)


def check_regular(url: str) -> None:
    """BadInput("not_a_file") unless `url` is a regular file (after symlinks): for files that a
    library opens by path (decoders, mesh loaders), checked before it can block on a FIFO."""
    fs, path = fs_and_path(url)
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return  # object stores hold objects only
    try:
        st = os.stat(path)
    except OSError as err:
        raise _io(url, err) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput("not_a_file", f"{url}: not a regular file")


def resolve_under(root: str, name: object) -> str:
    """`root`/`name` for a path taken from inside a data file (a COCO `file_name`, a glTF buffer
    uri, a list-file line), refused with BadInput("bad_path") unless it stays under `root`:
    absolute paths, `..` that climbs out, NUL bytes, non-strings, and (on a local disk) symlinks
    that lead outside. Object-store keys have no symlinks and no `..` of their own: the check
    there is on the normalised key."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BadInput("bad_path", f"{name!r}: not a relative path")
    if name.startswith("/") or "://" in name or (len(name) > 1 and name[1] == ":"):
        raise BadInput("bad_path", f"{name!r}: absolute path outside {root}")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise BadInput("bad_path", f"{name!r}: leaves {root}")
    url = posixpath.join(root.rstrip("/"), norm)
    fs, path = fs_and_path(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        real_root = os.path.realpath(fs_and_path(root)[1])
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
            raise BadInput("bad_path", f"{name!r}: resolves outside {root} (symlink)")
    return url


def list_entry(list_file: str | None, item_id: str, path: str) -> str:
    """The URL to read for one line of a list file (`sources.listing.list_inputs`): an absolute
    path or URL as written (the list's author names it), a relative one resolved under the list
    file's folder, BadInput("bad_path") when it climbs out. Items listed from a folder: `path`."""
    if not list_file or item_id.startswith("/") or "://" in item_id:
        return path
    return resolve_under(posixpath.dirname(list_file) or ".", item_id)


def size_of(url: str) -> int:
    try:
        fs, path = fs_and_path(url)
        return int(fs.size(path))
    except Exception as err:
        raise _io(url, err) from None


STAGE_PREFIX = "uvd-stage-"  # staged copies: <tmp>/uvd-stage-<pid>-<random>/
_STAGE_SWEPT: set[int] = set()  # pids (this process, after a fork) that swept the staging area already


def sweep_stale_stages(tmp: str | None = None) -> int:
    """Remove the staging folders of processes that are gone (a worker killed at unit timeout
    never reaches its `finally`); returns how many. Folders of live processes are left alone."""
    tmp = tmp or tempfile.gettempdir()
    removed = 0
    try:
        names = os.listdir(tmp)
    except OSError:
        return 0
    for name in names:
        pid = name[len(STAGE_PREFIX):].split("-", 1)[0] if name.startswith(STAGE_PREFIX) else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        removed += 1
    return removed


@contextlib.contextmanager
def local_copy(url: str, max_bytes: int) -> Iterator[str]:
    """A local path holding `url`: the path itself when local, else a temporary copy (removed
    after). Zero-byte files are `empty`; remote files over `max_bytes` are `too_large`.
    The copy's folder carries this process's pid: the first staging in a process removes the
    folders of dead processes."""
    size = size_of(url)
    if size == 0:
        raise BadInput("empty", "zero-byte file")
    if not is_remote(url):
        yield fs_and_path(url)[1]
        return
    if size > max_bytes:
        raise BadInput("too_large", f"{url}: {size} bytes > staging cap {max_bytes}")
    if os.getpid() not in _STAGE_SWEPT:
        _STAGE_SWEPT.add(os.getpid())
        sweep_stale_stages()
    tmpdir = tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-")
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
