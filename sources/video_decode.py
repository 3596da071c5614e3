"""Decoding videos in a separate, replaceable process, bounded in time.

decord can hang in native code holding the GIL (dmlc/decord#373, #375), and a bad file can
crash a decoder outright; neither may stall or kill a build. So all decoding happens in one
persistent worker process per source: each request has a deadline, and a worker that misses
it or dies is killed and replaced, and the video ends in the audit. The worker is also
recycled every `recycle_every` videos so that decoder leaks cannot grow a long unit.

Backends: decord first (fast, frame-accurate seeks); PyAV (bundles its own FFmpeg, has AV1
via dav1d) when decord cannot open or read a file. PyAV counts demuxed packets, seeks by their
timestamps, and when a stream ends before a planned frame it reports the frames it really
decoded, on which the caller plans again.
The worker normalises frames to the sentence size itself, so only 256×256 frames cross the
pipe and a 4K video costs no more parent memory than a small one.
"""
from __future__ import annotations

import bisect
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import numpy as np

from uvd.config import ImageSpec
from uvd.errors import BadInput

BACKENDS = ("decord", "pyav")
_BATCH_BYTES = 256 << 20
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def _pythonpath() -> str:
    """The worker must import this package as the parent does, installed or not."""
    return os.pathsep.join(p for p in [_PROJECT_ROOT, os.environ.get("PYTHONPATH", "")] if p)


def pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    backend: str


class DecodeFailure(Exception):
    """One backend could not decode a file (the next backend may); `kind` groups the audit."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


# ---------------------------------------------------------------- worker side (child process)

class _Short(Exception):
    def __init__(self, frames: int) -> None:
        self.frames = frames


def _short_error(err: BaseException) -> str:
    # decord's messages repeat "[time] /github/workspace/src/…cc:NNN:" prefixes; keep what failed.
    text = re.sub(r"\[[\d:]+\]\s*/\S+?:\d+:\s*", "", " ".join(str(err).split()))
    return f"{type(err).__name__}: {text[:300]}"


class _DecordReader:
    def __init__(self, path: str, threads: int) -> None:
        import decord

        self.vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        self.frames = len(self.vr)
        self.fps = float(self.vr.get_avg_fps())

    def read(self, indices: list[int], spec: ImageSpec, frame_bytes: int = 0) -> list[np.ndarray]:
        from uvd.image import normalise

        # One get_batch is fastest, but a 4K batch of 48 frames would be GBs: cap each at ~256 MB.
        chunk = max(4, _BATCH_BYTES // frame_bytes) if frame_bytes else 8
        out: list[np.ndarray] = []
        for i in range(0, len(indices), chunk):
            batch = self.vr.get_batch(indices[i:i + chunk]).asnumpy()
            out += [normalise(np.ascontiguousarray(f), spec) for f in batch]
            del batch
        return out


class _PyAVReader:
    """Frame i is the i-th frame in presentation order, as decord counts: the i-th smallest
    packet pts. Reads seek to the keyframe before the first wanted frame when the packets'
    timestamps allow it, and otherwise (or when a seek comes back short) decode from the start."""

    # Below this many frames before the first wanted one, decoding through is as cheap as seeking.
    SEEK_AFTER = 64

    def __init__(self, path: str, threads: int) -> None:
        import av

        self.path, self.threads = path, threads
        try:
            c = av.open(path)
        except EOFError:  # PyAV's EOFError: the file ends right after its header
            raise BadInput("empty", "no frames (the file ends after its header)") from None
        with c:
            if not c.streams.video:
                raise BadInput("decode", "no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            self.fps = float(rate) if rate else 0.0
            # Demuxing reads packets without decoding them: cheap, and truer than many headers (webm: none).
            packets = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.size]
        pts = [p for p, _ in packets]
        self.pts: list[int] | None = sorted(pts) if None not in pts and len(set(pts)) == len(pts) else None
        self.frames = len(pts)
        # Frame indices of the keyframes: a seek lands on one, so only a keyframe between two
        # wanted frames makes a second seek cheaper than decoding on.
        at = {p: i for i, p in enumerate(self.pts or [])}
        self.keyframes = sorted(at[p] for p, key in packets if key and p in at)

    def read(self, indices: list[int], spec: ImageSpec, frame_bytes: int = 0) -> list[np.ndarray]:
        spread = len(self._runs(indices)) > 1
        if self.pts is not None and max(indices) < len(self.pts) and (spread or min(indices) >= self.SEEK_AFTER):
            frames = self._read_seeking(indices, spec)
            if frames is not None:
                return frames
        return self._read_sequential(indices, spec)

    def _runs(self, indices: list[int]) -> list[list[int]]:
        """Wanted frames split where more than SEEK_AFTER frames and a keyframe lie between two
        of them: one seek per run, so clips spread over a long video do not cost decoding all
        that lies between (a 2-min 1080p H.264 with three clips: 6.8 CPU-s instead of 14.9,
        decord 9.0), and no seek goes back to a keyframe already decoded from."""
        wanted = sorted(set(indices))
        runs = [[wanted[0]]]
        for i in wanted[1:]:
            prev = runs[-1][-1]
            k = bisect.bisect_right(self.keyframes, prev)
            if i - prev > self.SEEK_AFTER and k < len(self.keyframes) and self.keyframes[k] <= i:
                runs.append([])
            runs[-1].append(i)
        return runs

    def _read_seeking(self, indices: list[int], spec: ImageSpec) -> list[np.ndarray] | None:
        import av

        from uvd.image import normalise

        assert self.pts is not None
        got: dict[int, np.ndarray] = {}
        with av.open(self.path) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = self.threads
            for run in self._runs(indices):
                by_pts = {self.pts[i]: i for i in run}
                last_pts = self.pts[run[-1]]
                c.seek(self.pts[run[0]], stream=s, backward=True, any_frame=False)  # flushes the decoder too
                for frame in c.decode(s):
                    if frame.pts is None:
                        return None
                    i = by_pts.get(frame.pts)
                    if i is not None:
                        got[i] = normalise(frame.to_ndarray(format="rgb24"), spec)
                    if frame.pts >= last_pts:
                        break
        # A frame missing here (packets that hold no picture, a seek that overshot) is settled by
        # decoding from the start, which also counts what the file really holds.
        return [got[i] for i in indices] if len(got) == len(set(indices)) else None

    def _read_sequential(self, indices: list[int], spec: ImageSpec) -> list[np.ndarray]:
        import av

        from uvd.image import normalise

        wanted = set(indices)
        last = max(indices)
        got: dict[int, np.ndarray] = {}
        n = 0
        with av.open(self.path) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = self.threads
            for frame in c.decode(s):  # raises on corrupt data: a half-decodable file is bad input
                if n in wanted:
                    got[n] = normalise(frame.to_ndarray(format="rgb24"), spec)
                if n == last:
                    break
                n += 1
            else:
                raise _Short(n)
        return [got[i] for i in indices]


def _probe_size(path: str) -> tuple[int, int]:
    """(width, height) from the header alone, when PyAV is there to read it."""
    if not pyav_available():
        return 0, 0
    import av

    try:
        with av.open(path) as c:
            cc = c.streams.video[0].codec_context if c.streams.video else None
            return (cc.width, cc.height) if cc else (0, 0)
    except Exception:
        return 0, 0  # the backend that opens the file reports the real problem


def _worker_main(recv: Connection, send: Connection, spec_dict: dict[str, Any], threads: int) -> None:
    spec = ImageSpec(**spec_dict)
    reader: Any = None
    w = h = 0
    while True:
        try:
            msg = recv.recv()
        except EOFError:
            return
        op = msg[0]
        try:
            if op == "open":
                _, path, backend = msg
                reader = None
                w, h = _probe_size(path)
                if w * h > spec.max_pixels:
                    raise BadInput("too_large", f"{w}x{h} frames exceed max_pixels={spec.max_pixels}")
                reader = (_DecordReader if backend == "decord" else _PyAVReader)(path, threads)
                send.send(("ok", VideoInfo(reader.frames, reader.fps, w, h, backend)))
            elif op == "read":
                send.send(("ok", reader.read(list(msg[1]), spec, 3 * w * h)))
            elif op == "ping":
                send.send(("ok", None))
            elif op == "stop":
                return
        except _Short as short:
            send.send(("short", short.frames))
        except BadInput as err:
            send.send(("error", err.kind, str(err).split(": ", 1)[-1]))
        except Exception as err:  # decoders raise many types; each is this file's failure
            send.send(("error", "decode", _short_error(err)))


# ---------------------------------------------------------------- parent side

class IsolatedDecoder:
    """A decoding worker process with a deadline per request; replaced when it hangs or dies."""

    def __init__(self, spec: ImageSpec, backend: str = "auto", timeout_s: float = 120.0,
                 recycle_every: int = 200, threads: int = 1) -> None:
        if backend not in ("auto", *BACKENDS):
            raise ValueError(f"unknown video backend {backend!r}")
        self.spec, self.backend, self.timeout_s = spec, backend, timeout_s
        self.recycle_every, self.threads = recycle_every, threads
        self._proc: Any = None
        self._conn: Any = None
        self._videos = 0
        self.restarts = 0  # workers killed after a hang or crash (for stats and tests)

    def backends(self) -> list[str]:
        if self.backend != "auto":
            return [self.backend]
        return ["decord", "pyav"] if pyav_available() else ["decord"]

    def _start(self) -> None:
        # A fresh interpreter (not fork: the parent may be a threaded Ray worker whose copied locks
        # deadlock; not multiprocessing's spawn: it re-imports the caller's __main__).
        child_r, parent_w = os.pipe()
        parent_r, child_w = os.pipe()
        args = json.dumps({"spec": self.spec.model_dump(), "threads": self.threads})
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sources.video_decode", str(child_r), str(child_w), args],
            pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log,  # FFmpeg's warnings stay out of the build log; a crash reports the tail
            env={**os.environ, "PYTHONPATH": _pythonpath()})
        os.close(child_r)
        os.close(child_w)
        self._conn = Connection(parent_w, readable=False), Connection(parent_r, writable=False)

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()  # SIGKILL: a native hang ignores SIGTERM (dmlc/decord#375)
            self._proc.wait(5)
            for c in self._conn:
                c.close()
            self._log.close()
        self._proc = self._conn = None

    def _call(self, msg: tuple[Any, ...], timeout_s: float) -> tuple[Any, ...]:
        if self._proc is None:
            self._start()
        try:
            send, recv = self._conn
            send.send(msg)
            if not recv.poll(timeout_s):
                self._kill()
                self.restarts += 1
                raise DecodeFailure("timeout", f"decoding took longer than {timeout_s:g}s; decoder process killed")
            return recv.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self._proc.wait(5) if self._proc is not None else None
            tail = self._log_tail()
            self._kill()
            self.restarts += 1
            raise DecodeFailure("crash", f"decoder process died (exit code {code}){tail}") from None

    def _log_tail(self) -> str:
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - 400))
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return f": {lines[-1][:200]}" if lines else ""

    def decode(self, path: str, planner: Callable[[VideoInfo], list[int]]) -> tuple[VideoInfo, list[np.ndarray]]:
        """Open `path`, let `planner(info)` choose frame indices (it may raise BadInput, e.g.
        too short), and decode them, trying each backend in turn. Returns the info the plan was
        made on (its `frames` corrected when the file over-reported) and one frame per index."""
        self._videos += 1
        if self._videos > self.recycle_every:
            self._kill()
            self._videos = 1
        failures: list[DecodeFailure] = []
        for backend in self.backends():
            try:
                return self._decode_with(path, backend, planner)
            except DecodeFailure as err:
                failures.append(err)
        last = failures[-1]
        tried = "; ".join(f"{b}: {f.detail}" for b, f in zip(self.backends(), failures))
        hint = "" if pyav_available() or self.backend != "auto" else " (install PyAV, `pip install av`, for a fallback decoder)"
        raise BadInput(last.kind, f"{tried}{hint}")

    def _decode_with(self, path: str, backend: str,
                     planner: Callable[[VideoInfo], list[int]]) -> tuple[VideoInfo, list[np.ndarray]]:
        reply = self._call(("open", os.path.abspath(path), backend), self.timeout_s)
        if reply[0] != "ok":
            if reply[1] == "too_large":
                raise BadInput(reply[1], reply[2])  # no backend would do better
            raise DecodeFailure(reply[1], reply[2])
        info: VideoInfo = reply[1]
        for _ in range(2):
            indices = planner(info)
            reply = self._call(("read", indices), self.timeout_s)
            if reply[0] == "ok":
                return info, reply[1]
            if reply[0] == "short":  # the header over-reported: plan again on what is really there
                info = VideoInfo(reply[1], info.fps, info.width, info.height, backend)
                continue
            raise DecodeFailure(reply[1], reply[2])
        raise DecodeFailure("decode", f"the file ended early twice (at frame {info.frames})")

    def warm_up(self) -> None:
        """Start the worker now and wait until it has imported its decoders."""
        self._call(("ping",), self.timeout_s)

    def close(self) -> None:
        # The worker holds no state worth a clean exit, and tearing down an interpreter with
        # decord and PyAV loaded takes longer than the kill.
        self._kill()

if __name__ == "__main__":
    # Run the imported module's function so that pickled replies name `sources.video_decode`, not `__main__`.
    from sources.video_decode import _worker_main as _main

    try:  # Linux: die with the parent, even while hung in native code that no pipe EOF would reach
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    _args = json.loads(sys.argv[3])
    _main(Connection(int(sys.argv[1]), writable=False),
                 Connection(int(sys.argv[2]), readable=False), _args["spec"], _args["threads"])
