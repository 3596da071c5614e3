"""Our normalise + encode + shard-write path vs a bare OpenCV loop, on the same files, one core.

    python benchmarks/bench_backbone.py [--n 300] [--repeat 3]

Ours: `uvd.unit.run_unit` of an `image_folder` + `single` unit (defensive decode with reduced-size
JPEG decoding, center-crop to 256, JPEG encode, Parquet shard + audit + stats, commit protocol).
Baseline: read, cv2.imdecode, resize short side to 256, center crop, cv2.imencode; nothing else.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from uvd.config import BuildConfig
from uvd.plan import plan_units
from uvd.cli.plugins import register_builtin
from uvd.unit import run_unit

register_builtin()  # image_folder and single by name, as the CLI registers them

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def make_inputs(root: Path, n: int) -> list[Path]:
    """Real photos from sample_data, rescaled to 320–1600 px on the long side (typical web sizes)."""
    photos = [cv2.imread(str(p)) for p in sorted(SAMPLES.glob("images/*.jpg")) + sorted(SAMPLES.glob("coco/*.jpg"))]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        long_side = int(rng.integers(320, 1601))
        s = long_side / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))))
        p = root / f"{i:05d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(p)
    return paths


def bare_opencv(paths: list[Path], size: int = 256) -> int:
    n = 0
    for p in paths:
        img = cv2.imdecode(np.frombuffer(p.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        ok, buf = cv2.imencode(".jpg", img[y:y + size, x:x + size], [cv2.IMWRITE_JPEG_QUALITY, 95])
        n += ok and len(buf) > 0
    return n


def ours(root: Path, out: Path) -> int:
    cfg = BuildConfig.model_validate({"out": str(out), "datasets": [
        {"name": "bench", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
         "builder": "single", "items_per_unit": 100000}]})
    (u,) = plan_units(cfg)
    return run_unit(cfg, u.dataset, u.unit, u.payload, str(out))["images"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="uvd-bench-"))
    try:
        (tmp / "in").mkdir()
        paths = make_inputs(tmp / "in", args.n)
        best = {"ours": 0.0, "bare": 0.0}
        for r in range(args.repeat):  # interleaved, best of each: the machine is shared and noisy
            t = time.perf_counter()
            n = bare_opencv(paths)
            best["bare"] = max(best["bare"], n / (time.perf_counter() - t))
            out = tmp / f"out{r}"
            t = time.perf_counter()
            n = ours(tmp / "in", out)
            best["ours"] = max(best["ours"], n / (time.perf_counter() - t))
            shutil.rmtree(out)
        print(f"images: {args.n} (320-1600 px JPEG), one core, best of {args.repeat}")
        print(f"bare OpenCV loop (decode, resize, crop, encode): {best['bare']:8.1f} images/s")
        print(f"uvd unit (decode, normalise, encode, shard+audit): {best['ours']:8.1f} images/s")
        print(f"ratio uvd / bare: {best['ours'] / best['bare']:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
