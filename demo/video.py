"""Demo inputs for video (demo/run.py DEMO_INPUTS), and the generated clips tests and the benchmark use.

Generated frames carry their own index as a 4×4 grid of black/white cells in the middle of
the picture, large enough to survive H.264, MJPEG, the centre crop to 256×256 and JPEG
storage, so a test can read back which frame a sentence image came from.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from demo.samples import samples_dir

GRID = 4  # 16 bits: indices up to 65535


def index_frame(i: int, width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """An RGB frame whose central grid spells `i` in binary (cell k = bit k, white = 1)."""
    # A moving colour gradient: frames differ everywhere, yet stay cheap to encode.
    x = (np.arange(width)[None, :] + 3 * i + seed) % 256
    y = np.arange(height)[:, None]
    img = np.stack(np.broadcast_arrays(60 + x // 2, 60 + (y + i) % 128, np.full_like(x, 100 + (i % 50))), -1)
    img = np.ascontiguousarray(np.broadcast_to(img, (height, width, 3)), dtype=np.uint8)
    cell = min(width, height) // (GRID + 2)
    x0, y0 = (width - GRID * cell) // 2, (height - GRID * cell) // 2
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        img[y0 + r * cell:y0 + (r + 1) * cell, x0 + c * cell:x0 + (c + 1) * cell] = 255 if (i >> k) & 1 else 0
    return img


def write_video(path: str | Path, frames: int, fps: int = 30, codec: str = "h264", width: int = 320,
                height: int = 240, options: dict[str, str] | None = None) -> Path:
    """Write frames 0..frames-1 of `index_frame` with PyAV (mp4/mkv/mov/webm) or OpenCV (MJPG .avi)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".avi":
        import cv2

        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
        for i in range(frames):
            vw.write(cv2.cvtColor(index_frame(i, width, height), cv2.COLOR_RGB2BGR))
        vw.release()
        return path
    import av

    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        if frames == 0:
            c.start_encoding()  # header and stream, no packets: a "video" of zero frames
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def davis_ids(i: int, width: int = 320, height: int = 240, objects: int = 2) -> np.ndarray:
    """Frame i's object-id map in `write_davis`: object k is a 40×40 square that moves with i."""
    ids = np.zeros((height, width), np.uint8)
    for k in range(objects):
        x = (i * 7 + k * 90) % (width - 40)
        ids[10 + k * 50:50 + k * 50, x:x + 40] = k + 1
    return ids


def write_davis(root: str | Path, video: str, frames: int, width: int = 320, height: int = 240,
                objects: int = 2) -> Path:
    """A DAVIS-style video: JPEGImages/480p/<video>/00000.jpg + Annotations/480p/<video>/00000.png
    (palette PNG of object ids). Object k's square moves with the frame index, so a mask
    belongs to exactly one frame; the frame carries its index as `index_frame` does."""
    from PIL import Image

    from uvd import codec

    root = Path(root)
    fdir, adir = root / "JPEGImages" / "480p" / video, root / "Annotations" / "480p" / video
    fdir.mkdir(parents=True, exist_ok=True)
    adir.mkdir(parents=True, exist_ok=True)
    davis_palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * (768 - 15)
    for i in range(frames):
        (fdir / f"{i:05d}.jpg").write_bytes(codec.encode(index_frame(i, width, height)))
        im = Image.fromarray(davis_ids(i, width, height, objects))
        im.putpalette(davis_palette)  # an "L" image becomes "P": indices kept, colours attached
        im.save(adir / f"{i:05d}.png")
    return root


def video_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """The real pancake clip (short at stride 30), the corrupted sample, a generated clip; and a tiny DAVIS set."""
    vids = workdir / "videos"
    (vids / "real").mkdir(parents=True, exist_ok=True)
    for name in ("flipping_a_pancake.mkv", "corrupted.mp4"):
        shutil.copy(samples_dir() / "video" / name, vids / "real" / name)
    write_video(vids / "generated" / "counter.mp4", 400)
    davis = write_davis(workdir / "davis", "squares", 24)
    write_davis(davis, "squares_b", 12, objects=1)
    return [
        {"name": "videos", "source": "video", "source_args": {"root": str(vids)}, "builder": "video",
         "items_per_unit": 8},
        {"name": "davis_interleaved", "source": "annotated_video",
         "source_args": {"root": str(davis), "strides": [2]}, "builder": "interleaved"},
        {"name": "davis_grouped", "source": "annotated_video",
         "source_args": {"root": str(davis), "strides": [1]}, "builder": "grouped"},
    ]
