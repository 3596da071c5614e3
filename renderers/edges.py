"""Edge maps: OpenCV's Canny detector, drawn white on black."""
from __future__ import annotations

import cv2
import numpy as np


def canny(rgb: np.ndarray, low: float = 100.0, high: float = 200.0, blur_sigma: float = 0.0,
          aperture: int = 3, l2_gradient: bool = False) -> np.ndarray:
    """H×W×3 uint8 photo → H×W×3 uint8, 255 on edge pixels, 0 elsewhere.

    `low`/`high` are Canny's hysteresis thresholds on the gradient magnitude of the grey
    image; `blur_sigma` > 0 smooths first, which suppresses texture edges in busy photos.
    """
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    edges = cv2.Canny(gray, float(low), float(high), apertureSize=aperture, L2gradient=l2_gradient)
    return np.repeat(edges[..., None], 3, axis=2)
