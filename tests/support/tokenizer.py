"""Helpers for the tokenizer tests: real JPEG inputs built into real sentence shards (in-process, no Ray)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from uvd import codec
from uvd.config import BuildConfig, parse_model
from uvd.unit import make_source, run_unit
from uvd.layout import unit_name

# One torch thread: on a shared, oversubscribed machine two OpenMP threads spin against each other
# and run several times slower than one.
torch.set_num_threads(1)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def write_inputs(root: Path, generated: int = 6) -> Path:
    """Real sample photos plus a few generated JPEGs of smooth colour gradients, in class folders."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    for f in sorted((SAMPLES / "images").glob("*.jpg"))[:4]:
        shutil.copy(f, root / "photos" / f.name)
    rng = np.random.default_rng(0)
    (root / "gradients").mkdir(exist_ok=True)
    for i in range(generated):
        h, w = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        yy, xx = np.mgrid[0:h, 0:w]
        c = rng.integers(0, 255, 3)
        img = np.stack([(xx * 255 // w + c[0]) % 256, (yy * 255 // h + c[1]) % 256,
                        np.full((h, w), c[2])], -1).astype(np.uint8)
        (root / "gradients" / f"g{i:02d}.jpg").write_bytes(codec.encode(img))
    return root


def build_sentences(tmp: Path, items_per_unit: int = 4, generated: int = 6, size: int = 256) -> tuple[str, BuildConfig]:
    """Sentence shards for the inputs above, committed unit by unit with uvd.unit.run_unit."""
    root = write_inputs(tmp / "inputs", generated)
    out = str(tmp / "build")
    cfg = parse_model(BuildConfig, {"out": out, "seed": 0, "image": {"size": size}, "datasets": [
        {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
         "builder": "single", "items_per_unit": items_per_unit}]}, "test")
    ds = cfg.datasets[0]
    source = make_source(cfg, ds)
    payloads = source.plan(ds.items_per_unit)
    source.close()
    for i, p in enumerate(payloads):
        run_unit(cfg, ds.key, unit_name(i), p, out)
    return out, cfg
