import cv2
import numpy as np
import pytest

from conftest import BAD_AND_ODD, gradient, jpeg_bytes, png_bytes
from uvd import codec
from uvd.config import ImageSpec
from uvd.errors import BadInput
from uvd.image import decode_image, fit_transform, normalise, sniff, to_sentence_image


@pytest.mark.parametrize("name", sorted(BAD_AND_ODD))
def test_bad_and_odd_inputs(name):
    make, expected = BAD_AND_ODD[name]
    data = make()
    if expected is None:
        out = to_sentence_image(data)
        assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    else:
        with pytest.raises(BadInput) as err:
            to_sentence_image(data)
        assert err.value.kind == expected


def test_alpha_is_composited_over_white_and_16bit_scaled():
    transparent = np.zeros((40, 50, 4), np.uint8)  # fully transparent black
    assert (decode_image(png_bytes(transparent)) == 255).all()
    full16 = np.full((40, 50), 65535, np.uint16)
    half16 = np.full((40, 50), 32896, np.uint16)  # 128 * 257
    assert (decode_image(png_bytes(full16)) == 255).all()
    assert (decode_image(png_bytes(half16)) == 128).all()


def test_cmyk_and_grey_colours_survive():
    from conftest import _cmyk_jpeg

    rgb = decode_image(_cmyk_jpeg())
    ref = gradient(150, 200)
    assert np.abs(rgb.astype(int) - ref).mean() < 6
    grey = decode_image(jpeg_bytes(gradient(100, 120)[:, :, 0]))
    assert grey.shape == (100, 120, 3) and (grey[:, :, 0] == grey[:, :, 2]).all()


def test_exif_orientation_is_applied():
    from PIL import Image

    img = np.zeros((200, 300, 3), np.uint8)
    img[:, :150] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = jpeg_bytes(img, exif=exif)
    out = decode_image(data)
    assert out.shape == (300, 200, 3)
    assert out[20, 100].mean() > 200 and out[280, 100].mean() < 50  # white half now on top
    reduced = decode_image(data, min_side=50)  # the reduced-size path orients too
    assert reduced.shape[0] > reduced.shape[1]


def test_reduced_decoding_is_close_to_full_decoding():
    data = jpeg_bytes(gradient(1200, 1600))
    spec = ImageSpec()
    fast = to_sentence_image(data, spec)
    full = normalise(decode_image(data, spec), spec)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3


@pytest.mark.parametrize("mode", ["center_crop", "squash", "pad"])
def test_points_follow_the_image_transform(mode):
    h, w = 300, 500
    img = np.zeros((h, w, 3), np.uint8)
    pts = np.array([[250.0, 150.0], [300.0, 100.0], [200.0, 220.0]])
    for x, y in pts:
        cv2.circle(img, (int(x), int(y)), 6, (255, 255, 255), -1)
    spec = ImageSpec(resize=mode)
    out = normalise(img, spec)
    assert out.shape == (256, 256, 3)
    for x, y in fit_transform(w, h, 256, mode).points(pts):
        xi, yi = int(round(x)), int(round(y))
        assert out[yi, xi].mean() > 100, (mode, x, y)


def test_pad_adds_black_bars_and_crop_keeps_the_centre():
    img = np.full((100, 400, 3), 200, np.uint8)
    padded = normalise(img, ImageSpec(resize="pad"))
    assert padded[0].max() == 0 and padded[128].min() == 200
    img[:, 180:220] = 0  # a dark stripe at the centre
    cropped = normalise(img, ImageSpec(resize="center_crop"))
    assert cropped[:, 128].max() < 30 and cropped[:, 0].min() > 150


def test_codec_stores_photos_as_jpeg_and_renders_as_png():
    img = gradient(256, 256)
    assert sniff(codec.encode(img)) == "jpeg"
    png = codec.encode(img, lossless=True)
    assert sniff(png) == "png"
    assert (codec.decode(png) == img).all()
    with pytest.raises(BadInput):
        codec.decode(b"GIF89a....")


@pytest.mark.parametrize("mode", ["center_crop", "pad", "squash"])
@pytest.mark.parametrize("shape", [(600, 800), (1000, 700), (200, 300), (257, 1300)])
def test_the_photo_fast_path_gives_the_bytes_of_decode_then_normalise(mode, shape):
    rng = np.random.default_rng(sum(shape))
    img = cv2.GaussianBlur(rng.integers(0, 256, shape + (3,), dtype=np.uint8), (5, 5), 0)
    img[:, : shape[1] // 3, 0] = 250  # colour that differs by channel: a missed channel swap shows
    data = jpeg_bytes(img)
    spec = ImageSpec(resize=mode)
    need = spec.size if mode != "pad" else 0
    reduced = decode_image(data, spec, min_side=need)
    expected = normalise(reduced, spec, dct_scaled=reduced.shape[0] < shape[0])
    assert np.array_equal(to_sentence_image(data, spec), expected)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_the_photo_resize_is_closer_to_a_full_resolution_lanczos_than_a_box(samples):
    """Why `resample` does not use INTER_AREA below 2×: on real photos its result follows an
    antialiased full-resolution resample (PIL's Lanczos) better, after a DCT-scaled decode
    (cubic) and at full resolution (Gaussian, then cubic); and the Gaussian is needed there,
    since cubic alone falls behind the box on at least one of those photos."""
    from PIL import Image

    spec = ImageSpec()
    gains = {"dct_scaled": [], "full": [], "full, no gaussian": []}
    for path in sorted((samples / "coco").glob("*.jpg")) + sorted((samples / "pose" / "mpii").glob("*.jpg")):
        data = path.read_bytes()
        full = decode_image(data, spec)
        h, w = full.shape[:2]
        t = fit_transform(w, h, spec.size, spec.resize)
        (nw, nh), x0, y0 = t.resized, int(-t.tx), int(-t.ty)
        photo = decode_image(data, spec, min_side=spec.size)
        if photo.shape[1] >= 2 * fit_transform(photo.shape[1], photo.shape[0], spec.size, spec.resize).resized[0]:
            continue  # what the photo path shrinks 2× or more is INTER_AREA either way
        ref = np.asarray(Image.fromarray(full).resize((nw, nh), Image.LANCZOS))[y0:y0 + 256, x0:x0 + 256]
        boxed = _psnr(normalise(photo, spec, cv2.INTER_AREA), ref)
        if photo.shape[0] < h:
            gains["dct_scaled"].append(_psnr(to_sentence_image(data, spec), ref) - boxed)
        else:
            gains["full"].append(_psnr(to_sentence_image(data, spec), ref) - boxed)
            gains["full, no gaussian"].append(_psnr(normalise(full, spec, cv2.INTER_CUBIC), ref) - boxed)
    assert len(gains["dct_scaled"]) >= 3 and len(gains["full"]) >= 3, gains
    assert min(gains["dct_scaled"]) > 0 and min(gains["full"]) > 0, gains
    assert min(gains["full, no gaussian"]) < 0, gains
