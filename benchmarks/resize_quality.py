"""Which filter for the photo path's last resize: fidelity to a full-resolution Lanczos, and cost.

    python benchmarks/resize_quality.py              # the real photos, and 500 of the laion corpus

Each photo (256×256 centre crop, as `uvd build` makes it) is compared with a reference made
from the full-resolution decode: PIL's Lanczos (antialiased) resize of the short side to 256,
then the same crop. PSNR to that reference is measured for the last resize with INTER_AREA,
INTER_CUBIC, INTER_LINEAR and "GAUSS+CUBIC" (a Gaussian of sigma b·sqrt(r² - 1) before
INTER_CUBIC, for the blurs b of `--blurs`), applied to what the photo path decodes: the
DCT-scaled image when libjpeg's scaling was taken ("reduced"), else the full-resolution one
("full"). "uvd" is what `uvd.image.resample` picks. Photos whose short side is not above
256 (enlarged, not shrunk) or that the path shrinks 2× or more (INTER_AREA either way) are
left out. Per-call CPU is
`time.process_time` over the same images, best of 3, one thread.

Two sets: the real photos shipped with the project (sample_data/ and the shared data folder:
COCO, MPII, PoseTrack and video frames) and the benchmark corpus (benchmarks/photo_corpus.py:
crops of those photos already shrunk with INTER_AREA, hence smoother than camera images).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_corpus import corpus, real_photos  # noqa: E402
from uvd.config import ImageSpec  # noqa: E402
from uvd.image import decode_image, fit_transform, normalise, resample  # noqa: E402


def filters(blurs: list[float]) -> dict:
    """name → (img, spec, dct_scaled) → the normalised photo."""
    out = {n: (lambda f: lambda img, spec, _: normalise(img, spec, f))(f)
           for n, f in (("AREA", cv2.INTER_AREA), ("CUBIC", cv2.INTER_CUBIC), ("LINEAR", cv2.INTER_LINEAR))}
    for b in blurs:  # uvd's full-resolution rule (a Gaussian, then cubic) with another blur
        out[f"GAUSS {b:g}+CUBIC"] = (lambda b: lambda img, spec, _: _crop(b, img, spec))(b)
    out["uvd"] = lambda img, spec, scaled: normalise(img, spec, dct_scaled=scaled)
    return out


def _crop(blur: float, img: np.ndarray, spec: ImageSpec) -> np.ndarray:
    return _resize_and_crop(img, spec.size, lambda i, nw, nh: resample(i, nw, nh, blur=blur))


def _resize_and_crop(img: np.ndarray, size: int, resize) -> np.ndarray:  # noqa: ANN001
    """The centre crop `normalise` makes, with another resize: resize(img, nw, nh)."""
    h, w = img.shape[:2]
    t = fit_transform(w, h, size, "center_crop")
    (nw, nh), x0, y0 = t.resized, int(-t.tx), int(-t.ty)
    return resize(img, nw, nh)[y0:y0 + size, x0:x0 + size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2), 1e-12)))


def reference(full: np.ndarray, size: int) -> np.ndarray:
    def lanczos(img: np.ndarray, nw: int, nh: int) -> np.ndarray:
        return np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))

    return _resize_and_crop(full, size, lanczos)


def measure(paths: list[Path], spec: ImageSpec, fs: dict) -> tuple[dict, dict]:
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    inputs: dict[str, list[np.ndarray]] = defaultdict(list)
    for p in paths:
        data = p.read_bytes()
        full = decode_image(data, spec)
        if min(full.shape[:2]) <= spec.size:
            continue
        photo = decode_image(data, spec, min_side=spec.size)  # what the photo path decodes
        h, w = photo.shape[:2]
        if w >= 2 * fit_transform(w, h, spec.size, "center_crop").resized[0]:
            continue
        ref = reference(full, spec.size)
        group = "reduced" if photo.shape[0] < full.shape[0] else "full"
        inputs[group].append(photo)
        for name, fn in fs.items():
            scores[group][name].append(psnr(fn(photo, spec, group == "reduced"), ref))
    cost: dict[str, dict[str, float]] = defaultdict(dict)
    for group, imgs in inputs.items():
        for name, fn in fs.items():
            best = min(_cpu(lambda: [fn(i, spec, group == "reduced") for i in imgs]) for _ in range(3))
            cost[group][name] = best / len(imgs) * 1e3
    return scores, cost


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=int, default=500, help="corpus photos to score (0: none)")
    p.add_argument("--blurs", default="0.3,0.4,0.5,0.6", help="Gaussian blurs b to try before INTER_CUBIC")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    spec = ImageSpec()
    fs = filters([float(b) for b in args.blurs.split(",") if b])
    sets = {"real photos": real_photos()}
    if args.corpus:
        sets["laion corpus"] = sorted(corpus(6000).glob("*.jpg"))[:: max(1, 6000 // args.corpus)][: args.corpus]
    print("PSNR to a full-resolution Lanczos, dB (CPU ms a photo); and how often the filter is at least as close as INTER_AREA")
    print("| set | decoded | photos | filter | PSNR dB | min dB | ms | ≥ AREA |")
    print("|---|---|---|---|---|---|---|---|")
    for label, paths in sets.items():
        scores, cost = measure(paths, spec, fs)
        for group in ("reduced", "full"):
            if group not in scores:
                continue
            s, area = scores[group], np.array(scores[group]["AREA"])
            for name in fs:
                v = np.array(s[name])
                print(f"| {label} | {group} | {len(v)} | {name} | {v.mean():.2f} | {v.min():.2f} | "
                      f"{cost[group][name]:.2f} | {np.mean(v >= area):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
