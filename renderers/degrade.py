"""Generated low-level pairs: a clean photo in, its degraded twin out (the task's x; the photo is y).

Pure functions of an RGB uint8 array and a numpy Generator: the generator is the only source
of randomness, so the builder's per-item generator makes every pair reproducible.
Colorization and inpainting follow the LVM data scripts (ytongbai/LVM, tokenize_examples/
tokenize_colorization_dataset_muse.py and tokenize_inpainting_dataset_muse.py).
"""
from __future__ import annotations

import cv2
import numpy as np

# ITU-R BT.601 luma weights, as LVM's colorization script applies them to RGB.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """gray = 0.2989 R + 0.5870 G + 0.1140 B, rounded, repeated on three channels."""
    gray = rgb[..., :3].astype(np.float64) @ np.asarray(GRAY_WEIGHTS)
    g8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return np.repeat(g8[..., None], 3, axis=2)


def inpainting_mask(height: int, width: int, rng: np.random.Generator, hole_prob: float = 0.3,
                    patch: int = 32) -> np.ndarray:
    """Bool H×W, True where pixels are blacked out.

    With probability `hole_prob` one square hole whose side is drawn from [10%, 50%) of the
    shorter side; otherwise the image is cut into patch×patch tiles and every tile is dropped
    with one probability drawn uniformly per image (so some images lose almost nothing, some
    almost everything). A partial tile at the right/bottom edge is treated as a tile too.
    """
    mask = np.zeros((height, width), bool)
    if rng.random() < hole_prob:
        short = min(height, width)
        lo, hi = int(0.1 * short), int(0.5 * short)
        side = int(rng.integers(lo, hi)) if hi > lo else max(lo, 1)
        y = int(rng.integers(0, height - side + 1))
        x = int(rng.integers(0, width - side + 1))
        mask[y:y + side, x:x + side] = True
        return mask
    drop_prob = rng.random()
    rows, cols = -(-height // patch), -(-width // patch)
    tiles = rng.random((rows, cols)) < drop_prob
    return np.kron(tiles, np.ones((patch, patch), bool))[:height, :width]


def inpainting(rgb: np.ndarray, rng: np.random.Generator, hole_prob: float = 0.3, patch: int = 32) -> np.ndarray:
    out = rgb.copy()
    out[inpainting_mask(rgb.shape[0], rgb.shape[1], rng, hole_prob, patch)] = 0
    return out


def noise(rgb: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (10.0, 50.0)) -> np.ndarray:
    """Additive Gaussian noise, σ (in 0–255 units) drawn per image from `sigma`."""
    s = rng.uniform(*sigma)
    noisy = rgb.astype(np.float32) + rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(s)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def low_light(rgb: np.ndarray, rng: np.random.Generator, exposure: tuple[float, float] = (0.1, 0.4),
              gamma: tuple[float, float] = (1.5, 2.5), read_noise: float = 2.0) -> np.ndarray:
    """Under-exposure: out = exposure · x^gamma (x in [0, 1]) plus faint sensor noise,
    the usual synthetic low-light model (darker shadows crush more than highlights)."""
    e, g = rng.uniform(*exposure), rng.uniform(*gamma)
    x = (rgb.astype(np.float32) / 255.0) ** np.float32(g) * np.float32(e) * 255.0
    if read_noise > 0:
        x += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(read_noise)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle_deg)) * c, np.sin(np.deg2rad(angle_deg)) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return k / max(float(k.sum()), 1e-6)


def rain(rgb: np.ndarray, rng: np.random.Generator, density: tuple[float, float] = (0.002, 0.01),
         length: tuple[int, int] = (9, 25), angle: tuple[float, float] = (60.0, 120.0),
         strength: tuple[float, float] = (0.5, 0.9)) -> np.ndarray:
    """Synthetic rain: sparse random drops smeared along one direction by a line kernel, then
    screen-blended over the photo (streaks brighten, never darken)."""
    h, w = rgb.shape[:2]
    drops = (rng.random((h, w)) < rng.uniform(*density)).astype(np.float32) * rng.uniform(0.6, 1.0, (h, w)).astype(np.float32)
    n = int(rng.integers(length[0], length[1] + 1)) | 1
    streaks = cv2.filter2D(drops, -1, _line_kernel(n, rng.uniform(*angle)), borderType=cv2.BORDER_CONSTANT)
    streaks = np.clip(streaks * n * np.float32(rng.uniform(*strength)), 0, 1)[..., None]
    x = rgb.astype(np.float32) / 255.0
    out = 1.0 - (1.0 - x) * (1.0 - streaks)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def blur(rgb: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (1.0, 3.0),
         motion_length: tuple[int, int] = (7, 21), motion_prob: float = 0.5) -> np.ndarray:
    """Either Gaussian defocus (σ drawn per image) or linear motion blur (length and angle drawn)."""
    if rng.random() < motion_prob:
        n = int(rng.integers(motion_length[0], motion_length[1] + 1)) | 1
        return cv2.filter2D(rgb, -1, _line_kernel(n, rng.uniform(0.0, 180.0)), borderType=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(rng.uniform(*sigma)), borderType=cv2.BORDER_REFLECT)
