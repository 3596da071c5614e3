"""How sentence images are stored: JPEG for photos, PNG for rendered annotations; read by sniffing."""
from __future__ import annotations

import cv2
import numpy as np

from uvd.errors import BadInput
from uvd.image import sniff


def encode(img: np.ndarray, lossless: bool = False, jpeg_quality: int = 95) -> bytes:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if lossless:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    """A stored sentence image → H×W×3 RGB uint8 (format detected from the bytes)."""
    if sniff(data) not in ("jpeg", "png"):
        raise BadInput("decode", "stored image is neither JPEG nor PNG")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise BadInput("decode", "stored image does not decode")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
