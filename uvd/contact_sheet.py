"""Draw images side by side with their index, for a person to look at."""
from __future__ import annotations

import cv2
import numpy as np


def grid(images: list[np.ndarray], columns: int = 8, labels: list[str] | None = None, tile: int = 256,
         title: str | None = None) -> np.ndarray:
    """RGB uint8 grid: `columns` tiles per row, each image resized to tile×tile, labels under each."""
    if not images:
        raise ValueError("no images to draw")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    pad, label_h = 4, 18
    top = 26 if title else 0
    sheet = np.full((top + rows * (tile + label_h + pad) + pad, columns * (tile + pad) + pad, 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, title[:120], (pad, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        y, x = top + pad + r * (tile + label_h + pad), pad + c * (tile + pad)
        sheet[y:y + tile, x:x + tile] = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        text = labels[i] if labels else str(i)
        cv2.putText(sheet, text[:40], (x, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def save_png(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
