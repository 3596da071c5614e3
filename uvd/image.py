"""The one place images are decoded defensively and normalised to size×size RGB uint8.

Everything that enters a sentence goes through `to_sentence_image` (photos) or
`decode_image` + `normalise` (when annotations must be mapped with `transform_points`).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from uvd.config import ImageSpec
from uvd.errors import BadInput

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit from the header, before any decoding

# Long side / short side beyond which an image is refused (`too_large`): a 65000×1 "photo" holds
# nothing a 256×256 crop can show, and its header is the cheap way to ask for gigabytes.
MAX_ASPECT = 50
# Center-crop: when resizing the whole image would make more than this many times the output's
# pixels (aspect ratio over 4:1), the source is cropped to the output's window first.
CROP_FIRST_AREA = 4
cv2.setNumThreads(1)  # one unit per core: OpenCV's own threads only fight Ray's workers

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff(data: bytes) -> str | None:
    """The image format from its first bytes, or None when it is not an image we read."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone; raises BadInput for unreadable headers."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception as err:  # PIL raises many types for garbage
        raise BadInput("decode", f"unreadable header ({type(err).__name__})") from None


def _check(data: bytes, spec: ImageSpec) -> tuple[str, int, int]:
    if not data:
        raise BadInput("empty", "zero-byte file")
    fmt = sniff(data)
    if fmt is None:
        raise BadInput("decode", "not an image (unknown signature)")
    w, h = header_size(data)
    if w <= 0 or h <= 0:
        raise BadInput("decode", f"bad dimensions {w}x{h}")
    if w * h > spec.max_pixels:
        raise BadInput("too_large", f"{w}x{h} exceeds max_pixels={spec.max_pixels}")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise BadInput("too_large", f"{w}x{h}: aspect ratio beyond {MAX_ASPECT}:1")
    if fmt == "jpeg" and data.rfind(b"\xff\xd9") < len(data.rstrip(b"\x00")) - 2:
        # libjpeg pads a truncated file with grey and only warns; refuse it instead.
        raise BadInput("decode", "truncated JPEG (no end-of-image marker)")
    return fmt, w, h


def _to_rgb8(arr: np.ndarray) -> np.ndarray:
    """OpenCV's IMREAD_UNCHANGED output (any depth, 1-4 channels, BGR) → RGB uint8."""
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 + 32767) // 65535
        arr = arr.astype(np.uint8)
    elif arr.dtype in (np.float32, np.float64):
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise BadInput("decode", f"unsupported sample type {arr.dtype}")
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    channels = arr.shape[2]
    if channels == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # grey + alpha
        arr = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR), arr[:, :, 1]
        arr = np.dstack(arr)
        channels = 4
    if channels == 4:  # composite over white, as a viewer shows it
        alpha = arr[:, :, 3:4].astype(np.uint16)
        rgb = arr[:, :, :3].astype(np.uint16)
        arr = ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_BGR2RGB)


def _decode_pil(data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            elif im.mode.startswith("I;16") or im.mode == "I":
                arr = np.asarray(im, dtype=np.uint32)
                return _to_rgb8((arr * 1).astype(np.uint16))
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except BadInput:
        raise
    except Exception as err:
        raise BadInput("decode", f"{type(err).__name__}: {err}") from None


def decode_image(data: bytes, spec: ImageSpec | None = None, min_side: int = 0) -> np.ndarray:
    """Bytes → H×W×3 RGB uint8, EXIF-oriented. With min_side > 0, a JPEG may be decoded at
    1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) as long as its short side stays ≥ min_side."""
    return _decode(data, spec or ImageSpec(), min_side)[0]


def _decode(data: bytes, spec: ImageSpec, min_side: int) -> tuple[np.ndarray, int]:
    """decode_image, and the DCT scale it took (1, 2, 4 or 8)."""
    fmt, w, h = _check(data, spec)
    buf = np.frombuffer(data, np.uint8)
    if fmt == "jpeg":
        flag, scale = cv2.IMREAD_COLOR, 1
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min_side and min(w, h) // factor >= min_side:
                flag, scale = reduced, factor
                break
        arr = cv2.imdecode(buf, flag)  # applies EXIF orientation, converts CMYK and grey
        if arr is None:
            return _decode_pil(data), 1
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), scale
    if fmt in ("png", "bmp", "tiff", "webp"):
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if arr is not None:
            return _to_rgb8(arr), 1
    return _decode_pil(data), 1


@dataclass(frozen=True)
class Transform:
    """Maps original pixel coordinates to the normalised image: x' = x·sx + tx, y' = y·sy + ty."""

    sx: float
    sy: float
    tx: float
    ty: float
    resized: tuple[int, int]  # (width, height) after resizing, before crop/pad

    def points(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.sx + self.tx, xy[..., 1] * self.sy + self.ty], axis=-1)


def fit_transform(width: int, height: int, size: int, mode: str) -> Transform:
    if mode == "squash":
        return Transform(size / width, size / height, 0.0, 0.0, (size, size))
    if mode == "center_crop":
        s = size / min(width, height)
    elif mode == "pad":
        s = size / max(width, height)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    nw, nh = max(1, round(width * s)), max(1, round(height * s))
    ox, oy = (nw - size) // 2, (nh - size) // 2  # crop offset (negative: pad offset)
    return Transform(nw / width, nh / height, float(-ox), float(-oy), (nw, nh))


def normalise(img: np.ndarray, spec: ImageSpec | None = None, interpolation: int | None = None,
              dct_scaled: bool = False) -> np.ndarray:
    """H×W×3 uint8 → size×size×3 uint8 by the spec's resize mode (pad fills with black).

    Label maps pass interpolation=cv2.INTER_NEAREST so that class ids are never blended.
    `dct_scaled`: the image was decoded at a reduced scale by libjpeg (see `resample`).
    """
    spec = spec or ImageSpec()
    size = spec.size
    h, w = img.shape[:2]
    t = fit_transform(w, h, size, spec.resize)
    nw, nh = t.resized
    if spec.resize == "center_crop" and nw * nh > CROP_FIRST_AREA * size * size:
        return _crop_then_resize(img, t, size, interpolation, dct_scaled)
    if (nw, nh) == (w, h):
        out = img
    elif interpolation is not None:
        out = cv2.resize(img, (nw, nh), interpolation=interpolation)
    else:
        out = resample(img, nw, nh, dct_scaled)
    if spec.resize == "squash":
        return np.ascontiguousarray(out)
    x0, y0 = int(-t.tx), int(-t.ty)
    if spec.resize == "center_crop":
        return np.ascontiguousarray(out[y0:y0 + size, x0:x0 + size])
    canvas = np.zeros((size, size) + out.shape[2:], dtype=out.dtype)
    canvas[-y0:-y0 + nh, -x0:-x0 + nw] = out
    return canvas


def _crop_then_resize(img: np.ndarray, t: Transform, size: int, interpolation: int | None,
                      dct_scaled: bool) -> np.ndarray:
    """Center crop of an elongated image without resizing all of it: only the source window the
    output shows (plus 2 px for the filter's reach) is resized, at `t`'s exact scale, from a start
    that lands (nearly) on a whole output pixel, so the crop matches the full resize's to a small
    fraction of a pixel and memory stays near the output's size whatever the aspect ratio."""
    h, w = img.shape[:2]
    x0 = _aligned_start(math.floor(-t.tx / t.sx) - 2, t.sx)
    y0 = _aligned_start(math.floor(-t.ty / t.sy) - 2, t.sy)
    x1 = min(w, math.ceil((size - t.tx) / t.sx) + 2)
    y1 = min(h, math.ceil((size - t.ty) / t.sy) + 2)
    sub = img[y0:y1, x0:x1]
    if interpolation is not None:
        out = cv2.resize(sub, None, fx=t.sx, fy=t.sy, interpolation=interpolation)
    else:
        out = resample(sub, 0, 0, dct_scaled, scale=(t.sx, t.sy))
    nh, nw = out.shape[:2]
    if nw < size or nh < size:  # rounding at a clipped edge: fill the last row/column
        out = cv2.copyMakeBorder(out, 0, max(0, size - nh), 0, max(0, size - nw), cv2.BORDER_REPLICATE)
        nh, nw = out.shape[:2]
    ox = min(max(0, round(-t.tx - x0 * t.sx)), nw - size)
    oy = min(max(0, round(-t.ty - y0 * t.sy)), nh - size)
    return np.ascontiguousarray(out[oy:oy + size, ox:ox + size])


def _aligned_start(start: int, scale: float) -> int:
    """The source index at or before `start` (≥ 0) whose scaled position is closest to a whole pixel."""
    if start <= 0:
        return 0
    lo = max(0, start - math.ceil(1 / scale) - 1)
    return min(range(lo, start + 1), key=lambda x: (abs(x * scale - round(x * scale)), -x))


# Gaussian prefilter before a shrink by r < 2: sigma = PREFILTER_BLUR * sqrt(r² - 1), the blur
# that takes an image with PREFILTER_BLUR px of its own blur to the same blur at the new scale
# (scale-space). 0.4 is where the cubic result is closest to a full-resolution Lanczos on both
# photo sets of benchmarks/resize_quality.py (0.3 … 0.6 measured).
PREFILTER_BLUR = 0.4


def resample(img: np.ndarray, nw: int, nh: int, dct_scaled: bool = False,
             blur: float = PREFILTER_BLUR, scale: tuple[float, float] | None = None) -> np.ndarray:
    """Resize a photo to nw×nh with the filter that follows an antialiased full-resolution
    resample (PIL's Lanczos) best at the cost we can pay (BENCHMARKS.md, laion profile):

    - shrinking 2× or more on an axis: INTER_AREA (a box that wide is the antialiasing);
    - shrinking less: INTER_CUBIC, after a small Gaussian (INTER_AREA at these ratios blurs
      more and costs 2–4× as much; cubic taps alone alias on camera photos). A DCT-scaled
      decode is already low-passed by libjpeg's scaled IDCT, so it gets no Gaussian;
    - enlarging: INTER_CUBIC.

    `blur` is there for benchmarks/resize_quality.py, which sweeps it. `scale`: (fx, fy) used
    as is instead of nw/w and nh/h (a window of a larger image resized at that image's scale).
    """
    h, w = img.shape[:2]
    if scale is not None:
        rx, ry = 1 / scale[0], 1 / scale[1]
        dsize, fx, fy = None, scale[0], scale[1]
    else:
        rx, ry = w / nw, h / nh
        dsize, fx, fy = (nw, nh), 0, 0
    if rx >= 2 or ry >= 2:
        return cv2.resize(img, dsize, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    if not dct_scaled and (rx > 1 or ry > 1):
        sx, sy = (blur * math.sqrt(max(r * r - 1.0, 0.0)) for r in (rx, ry))
        # A kernel of 1 on an axis that is not shrunk: sigma 0 would mean "from the kernel size".
        img = cv2.GaussianBlur(img, (5 if sx else 1, 5 if sy else 1), sigmaX=sx or 1.0, sigmaY=sy or 1.0)
    return cv2.resize(img, dsize, fx=fx, fy=fy, interpolation=cv2.INTER_CUBIC)


def to_sentence_image(image: bytes | np.ndarray, spec: ImageSpec | None = None) -> np.ndarray:
    """A photo (encoded or decoded) → size×size×3 uint8; the fast path for photos."""
    spec = spec or ImageSpec()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise BadInput("decode", f"expected H×W×3 uint8, got {arr.shape} {arr.dtype}")
    else:
        # Short side needed: center_crop keeps the short side, pad the long one, squash both.
        need = spec.size if spec.resize != "pad" else 0
        arr, scale = _decode(bytes(image), spec, need)
        return normalise(arr, spec, dct_scaled=scale > 1)
    return normalise(arr, spec)
