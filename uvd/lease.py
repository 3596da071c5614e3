"""One build per output at a time: the lease object `<out>/_lease.json`.

A build creates the lease before it plans and removes it when it ends (also on an error or
Ctrl-C). The object names its holder (host, pid, run id, start) and a heartbeat that a
background thread renews every `HEARTBEAT_S` seconds. Creation is atomic where the store allows:

- local disk: `O_CREAT | O_EXCL`;
- S3: a conditional PUT (`If-None-Match: *`, s3fs `pipe_file(mode="create")`); a store that
  refuses the header (an older S3-compatible server) gets a best-effort create;
- anything else (gs://, memory://): best effort: create if absent, then read it back and
  keep it only if it names this run. Two builds started within the same instant may then
  both pass; the heartbeat's read-back makes the later one's writes stop at its next beat.

A second build finds the lease and refuses at once (`LeaseHeld`, exit 2 in the CLI) naming the
holder. A lease whose holder process is gone on this very host (same host name, pid not
running: a killed build being rerun) is taken over at once. A lease is stale when its heartbeat
is older than its `stale_after_s` (written by the holder; default 60 s, `UVD_LEASE_STALE_S`);
taking over a stale lease of another host needs `--takeover`: a live build is never taken over. A holder
that finds, at a heartbeat, that the lease names another run has lost it: `check()` raises
before the build writes its manifest.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from uvd.storage import _is_local, _is_s3, fs_and_path, join, remove_file, write_json

logger = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0


def stale_after_s() -> float:
    """How old a heartbeat may be before its lease counts as abandoned (UVD_LEASE_STALE_S, default 60)."""
    try:
        return float(os.environ.get("UVD_LEASE_STALE_S", STALE_AFTER_S))
    except ValueError:
        return STALE_AFTER_S


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class LeaseHeld(RuntimeError):
    """Another build holds the output (or held it and may still be alive)."""

    def __init__(self, url: str, holder: dict[str, Any], why: str) -> None:
        self.url, self.holder = url, holder
        age = heartbeat_age(holder)
        who = (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, run {holder.get('run_id', '?')}, "
               f"started {_when(holder.get('started'))}, last heartbeat "
               + (f"{age:.0f}s ago" if age is not None else "unknown"))
        super().__init__(f"{url} is held by another build ({who}): {why}")


class LeaseLost(RuntimeError):
    """This build's lease was taken over (its heartbeat had gone stale): it must not write its manifest."""


def _when(t: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(t)))
    except (TypeError, ValueError):
        return "?"


def heartbeat_age(holder: dict[str, Any]) -> float | None:
    try:
        return max(0.0, time.time() - float(holder["heartbeat"]))
    except (KeyError, TypeError, ValueError):
        return None


def holder_dead(holder: dict[str, Any]) -> bool:
    """The holder ran on this host and its process is gone (a killed build)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def is_stale(holder: dict[str, Any]) -> bool:
    """Abandoned: no heartbeat within its stale limit, or its process is gone on this host."""
    age = heartbeat_age(holder)
    limit = float(holder.get("stale_after_s") or stale_after_s())
    return age is None or age > limit or holder_dead(holder)


def read_lease(out: str) -> dict[str, Any] | None:
    """The lease of the output `out` as it is now; None when there is none (or it is unreadable)."""
    fs, path = fs_and_path(join(out, LEASE_NAME))
    try:
        fs.invalidate_cache(path.rsplit("/", 1)[0])
        data = json.loads(fs.cat_file(path, start=0, end=1 << 20))  # a ranged read: one GET, no HEAD, on S3
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # half-written by a best-effort store, or garbage: an unknown holder
        return {}


class Lease:
    """A held lease; `release()` (or the `with` block's end) gives it up."""

    def __init__(self, out: str, run_id: str, stale_s: float, heartbeat_s: float) -> None:
        self.url = join(out, LEASE_NAME)
        self.out = out
        self.run_id = run_id
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        now = time.time()
        self.body = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": run_id, "started": now,
                     "heartbeat": now, "stale_after_s": stale_s}
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ended_runs(self) -> list[str]:
        """Run ids of the builds this lease was taken over from (their temporaries are garbage)."""
        return list(self.body.get("took_over", []))

    def inherit(self, holder: dict[str, Any]) -> None:
        """Remember the run taken over from, and the runs it had taken over (a short chain)."""
        runs = [r for r in [holder.get("run_id"), *holder.get("took_over", [])] if isinstance(r, str) and r]
        self.body["took_over"] = list(dict.fromkeys(runs))[:20]

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="uvd-lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.renew()
            except Exception as err:  # a store hiccup: the next beat tries again; staleness is 6 beats away
                logger.warning("lease heartbeat failed: %s", err)

    def renew(self) -> None:
        current = read_lease(self.out)
        if current is None or current.get("run_id") != self.run_id:
            self.lost = f"the lease now names {current}" if current else "the lease object was removed"
            logger.error("build %s lost its lease on %s: %s", self.run_id, self.out, self.lost)
            self._stop.set()
            return
        self.body["heartbeat"] = time.time()
        write_json(self.url, self.body)

    def check(self) -> None:
        """Raise LeaseLost if another build took the output over meanwhile."""
        if self.lost:
            raise LeaseLost(f"{self.out}: this build ({self.run_id}) lost its lease ({self.lost}); "
                            "another build owns the output now, so this one writes no manifest")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.lost:
            return
        current = read_lease(self.out)
        if current is not None and current.get("run_id") == self.run_id:
            remove_file(self.url)
        self.lost = "released"


def _create(url: str, data: bytes) -> bool | None:
    """Create `url` with `data` unless it exists: True when this call created it atomically, None
    when it wrote it on a best-effort check (to be read back), False when it exists."""
    fs, path = fs_and_path(url)
    if _is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True
    if _is_s3(fs):
        try:
            fs.pipe_file(path, data, mode="create")  # PUT with If-None-Match: *
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if "PreconditionFailed" in str(err) or "412" in str(err):
                return False
            if "NotImplemented" not in str(err) and "501" not in str(err):
                raise
            logger.warning("%s: the store refuses conditional PUTs; the lease is best effort", url)
    # best effort: check, write, read back (see the module's docstring)
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    return None


def acquire(out: str, run_id: str | None = None, takeover: bool = False, stale_s: float | None = None,
            heartbeat_s: float = HEARTBEAT_S, heartbeat: bool = True) -> Lease:
    """Take the lease of the output `out`, or raise LeaseHeld naming the holder.

    `takeover` replaces a stale lease (never a live one). The heartbeat thread starts unless
    `heartbeat` is False (tests)."""
    out = out.rstrip("/")
    lease = Lease(out, run_id or new_run_id(), stale_after_s() if stale_s is None else stale_s, heartbeat_s)
    for _ in range(2):  # a second try after removing a stale lease that --takeover allows
        created = _create(lease.url, json.dumps(lease.body, indent=2, sort_keys=True).encode())
        if created is not False:
            mine = read_lease(out) if created is None else lease.body
            if mine is not None and mine.get("run_id") == lease.run_id:
                if heartbeat:
                    lease.start_heartbeat()
                return lease
        holder = read_lease(out)
        if holder is None:  # released between our create and our read: try once more
            continue
        if holder_dead(holder):
            logger.warning("%s: the build that held it (pid %s on this host, run %s) is gone: taking over",
                           out, holder.get("pid"), holder.get("run_id"))
            lease.inherit(holder)
            remove_file(lease.url)
            continue
        if not is_stale(holder):
            raise LeaseHeld(out, holder, "it is alive; wait for it to finish, or stop it (a lease whose "
                            f"heartbeat is older than {holder.get('stale_after_s', lease.stale_s):.0f}s, or whose "
                            "process is gone, can be taken over with `uvd build … --takeover`)")
        if not takeover:
            raise LeaseHeld(out, holder, "its heartbeat is stale (the build was killed?); if no build is "
                            "writing there any more, rerun with `uvd build … --takeover`")
        logger.warning("taking over the stale lease of %s (run %s)", out, holder.get("run_id"))
        lease.inherit(holder)
        remove_file(lease.url)
    raise LeaseHeld(out, read_lease(out) or {}, "another build took it over at the same moment")
