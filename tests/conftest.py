"""Shared fixtures: the bundled samples and small inputs made in real formats."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.support.hostile_corpus import png_header_only
from uvd.cli.plugins import register_builtin

register_builtin()  # tests drive uvd.runner.build and run_unit directly, as the CLI does after registering

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), "sample_data/ must ship with the repository"
    return SAMPLES


def jpeg_bytes(img: np.ndarray, quality: int = 92, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, **save_kwargs)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 128)]).astype(np.uint8)


BAD_AND_ODD = {
    # name: (bytes maker, expected audit reason kind or None when it must succeed)
    "truncated.jpg": (lambda: jpeg_bytes(gradient(300, 400))[:2000], "decode"),
    "empty.jpg": (lambda: b"", "empty"),
    "alpha.png": (lambda: png_bytes(np.dstack([gradient(120, 160)[:, :, ::-1], np.full((120, 160), 128, np.uint8)])), None),
    "deep16.png": (lambda: png_bytes((gradient(120, 160).astype(np.uint16) * 257)), None),
    "cmyk.jpg": (lambda: _cmyk_jpeg(), None),
    "grey.jpg": (lambda: jpeg_bytes(gradient(200, 300)[:, :, 0]), None),
    "bomb.png": (lambda: png_header_only(30000, 30000), "too_large"),
    "text.jpg": (lambda: b"I am a text file pretending to be a JPEG\n", "decode"),
}


def _cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gradient(150, 200)).convert("CMYK").save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def odd_folder(tmp_path: Path, samples: Path) -> Path:
    """Real photos plus every bad or unusual input the backbone must survive."""
    root = tmp_path / "in"
    (root / "good").mkdir(parents=True)
    (root / "odd").mkdir()
    for f in sorted(samples.glob("images/*.jpg")):
        (root / "good" / f.name).write_bytes(f.read_bytes())
    for name, (make, _) in BAD_AND_ODD.items():
        (root / "odd" / name).write_bytes(make())
    return root


def build_dataset(tmp_path: Path, dataset: dict, seed: int = 3) -> tuple[list[dict], dict[str, dict], Path]:
    """Build every unit of one dataset in-process; its sentence rows, audit by item id, and output."""
    import pyarrow.parquet as pq

    from uvd.config import BuildConfig
    from uvd.unit import make_source, run_unit

    out = tmp_path / "out"
    cfg = BuildConfig.model_validate({"out": str(out), "seed": seed, "datasets": [dataset]})
    ds = cfg.datasets[0]
    for i, payload in enumerate(make_source(cfg, ds).plan(ds.items_per_unit)):
        run_unit(cfg, ds.key, f"{i:05d}", payload, str(out))
    rows = [r for p in sorted((out / "sentences" / ds.key).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    audit = {r["item_id"]: r for p in sorted((out / "audit" / ds.key).glob("*.parquet"))
             for r in pq.read_table(p).to_pylist()}
    return rows, audit, out
