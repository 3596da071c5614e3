"""Unique JPEGs of real-world sizes made from the real photos bundled with the project.

Each file is a random crop (30–100 % of the side, any aspect within 1:2..2:1) of one of the
real photos (sample_data/, ../shared/data), scaled so that its long side lies in 320–1280 px,
sometimes mirrored, with a small brightness shift, saved at JPEG quality 80–95: photo
content costs what photos cost to decode, and no two files are the same bytes. Cached by
(n, seed) under the benchmark cache folder, since making 6000 takes a while.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("UVD_BENCH_CACHE", ROOT / ".bench-cache"))
PHOTO_DIRS = (ROOT / "sample_data", ROOT.parent.parent / "shared" / "data", Path("/work/shared/data"))


def real_photos() -> list[Path]:
    """Every real JPEG we can find, 123 px to 1920 px (the large ones are video frames and MPII)."""
    found: dict[str, Path] = {}
    for d in PHOTO_DIRS:
        if d.is_dir():
            for p in sorted(d.rglob("*.jpg")):
                found.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p)
    if not found:
        raise FileNotFoundError("no real photos under sample_data/ or the shared data folder")
    return sorted(found.values())


def _variant(img: np.ndarray, rng: np.random.Generator, sizes: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # output width / height
    frac = rng.uniform(0.3, 1.0)
    cw = min(w, int(round(frac * min(w, h * aspect))))
    ch = min(h, max(16, int(round(cw / aspect))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    long_side = int(rng.integers(sizes[0], sizes[1] + 1))
    s = long_side / max(cw, ch)
    out = cv2.resize(crop, (max(1, round(cw * s)), max(1, round(ch * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return cv2.convertScaleAbs(out, alpha=1.0, beta=float(rng.uniform(-12, 12)))


def corpus(n: int, seed: int = 0, sizes: tuple[int, int] = (320, 1280)) -> Path:
    """A folder of n unique JPEGs named 000000.jpg …, built once and then reused."""
    folder = CACHE / f"photos-{n}-{seed}-{sizes[0]}-{sizes[1]}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in real_photos()]
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    i = 0
    while i < n:
        out = _variant(sources[int(rng.integers(len(sources)))], rng, sizes)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        digest = hashlib.sha256(buf).hexdigest()
        if not ok or digest in seen:
            continue
        seen.add(digest)
        (folder / f"{i:06d}.jpg").write_bytes(buf.tobytes())
        i += 1
    done.write_text(f"{n} unique JPEGs from {len(sources)} real photos\n")
    return folder
