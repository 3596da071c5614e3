"""Video test fixtures: read back the index a generated frame spells, and an mp4 whose header
over-reports its frame count (the demo's generated clips are in demo/video.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from demo.video import GRID, index_frame


def read_index(img: np.ndarray, source_size: tuple[int, int] = (320, 240), size: int = 256) -> int:
    """The index spelled by `index_frame` in a frame normalised (centre crop) to size×size."""
    w, h = source_size
    scale = size / min(w, h)
    cell = min(w, h) // (GRID + 2) * scale
    x0 = (w * scale - size) / 2
    y0 = (h * scale - size) / 2
    gx = (w - GRID * (min(w, h) // (GRID + 2))) / 2 * scale - x0
    gy = (h - GRID * (min(w, h) // (GRID + 2))) / 2 * scale - y0
    value = 0
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        cy, cx = gy + (r + 0.5) * cell, gx + (c + 0.5) * cell
        m = img[int(cy - cell / 4):int(cy + cell / 4), int(cx - cell / 4):int(cx + cell / 4)].mean()
        value |= int(m > 127) << k
    return value


def write_overreporting_mp4(path: str | Path, frames: int, extra: int, fps: int = 30) -> Path:
    """An H.264 mp4 with `frames` pictures followed by `extra` packets that hold only filler
    data: the container (and decord) count frames + extra frames, a decoder outputs `frames`."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.options = {"bframes": "0"}
        last = None
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")):
                last = (p.pts, p.duration or 1, p.time_base)
                c.mux(p)
        for p in s.encode():
            last = (p.pts, p.duration or 1, p.time_base)
            c.mux(p)
        pts, dur, tb = last  # type: ignore[misc]
        filler = bytes([0x0C]) + b"\xff" * 8 + b"\x80"  # NAL type 12: filler data, no picture
        for k in range(extra):
            pkt = av.Packet(len(filler).to_bytes(4, "big") + filler)
            pkt.stream, pkt.time_base = s, tb
            pkt.pts = pkt.dts = pts + (k + 1) * dur
            pkt.duration = dur
            c.mux(pkt)
    return path
