"""Detection targets: colour-coded boxes (one colour per class, from the palette) over the photo."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from renderers.palette import class_color


def box_thickness(height: int, width: int) -> int:
    """Line thickness scaled to the canvas: 2 px on a 256×256 image, at least 1."""
    return max(1, int(round(min(height, width) / 128)))


def draw_boxes(image: np.ndarray, boxes_xyxy: np.ndarray, class_ids: Sequence[int],
               thickness: int | None = None) -> np.ndarray:
    """Draw boxes (x0, y0, x1, y1 in this image's pixel coordinates) over a copy of `image`.

    Corners are rounded to the nearest pixel; the line is centred on the box edge. Boxes that
    stick out of the canvas are clipped by OpenCV, so a box cut by a centre crop keeps its
    visible edges. Later boxes are drawn over earlier ones: callers pass them in a fixed order.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected H×W×3 uint8, got {image.shape} {image.dtype}")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != len(class_ids):
        raise ValueError(f"{len(boxes)} boxes but {len(class_ids)} class ids")
    out = np.ascontiguousarray(image.copy())
    t = thickness or box_thickness(*image.shape[:2])
    for (x0, y0, x1, y1), cid in zip(boxes, class_ids):
        p0 = (int(round(x0)), int(round(y0)))
        p1 = (int(round(x1)), int(round(y1)))
        cv2.rectangle(out, p0, p1, class_color(cid), thickness=t, lineType=cv2.LINE_8)
    return out
