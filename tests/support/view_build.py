"""A small real build for the `uvd view` tests: photos (with bad files, so /failures has rows) and
category sentences, built in-process with uvd.runner.build (no Ray)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from typing import Iterable

from uvd import codec
from uvd.api import Builder
from uvd.cli.plugins import register_builtin
from uvd.config import BuildConfig
from uvd.records import Item, VisualSentence
from uvd.runner import build

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data" / "images"
BAD = {"odd/truncated.jpg": "decode", "odd/empty.jpg": "empty", "odd/text.jpg": "decode"}


def _write_inputs(root: Path) -> None:
    (root / "good").mkdir(parents=True)
    (root / "odd").mkdir()
    for f in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(f, root / "good" / f.name)
    rng = np.random.default_rng(3)
    for i in range(6):  # smooth gradients: distinct pictures, cheap to make
        h, w = int(rng.integers(120, 300)), int(rng.integers(120, 300))
        yy, xx = np.mgrid[0:h, 0:w]
        c = rng.integers(0, 255, 3)
        img = np.stack([(xx * 255 // w + c[0]) % 256, (yy * 255 // h + c[1]) % 256, np.full((h, w), c[2])], -1)
        (root / "good" / f"g{i:02d}.jpg").write_bytes(codec.encode(img.astype(np.uint8)))
    good = codec.encode(np.full((64, 64, 3), 90, np.uint8))
    (root / "odd" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "odd" / "empty.jpg").write_bytes(b"")
    (root / "odd" / "text.jpg").write_bytes(b"I am a text file pretending to be a JPEG\n")


class MixedBuilder(Builder):
    """Sentences of two tasks and layouts in one dataset, as annotated datasets make them: every
    other item a single photo (task image), the others a pair {photo, its mirror} (task mirror)."""

    name = "mixed"

    def process(self, item: Item) -> Iterable[VisualSentence]:
        image = self.ctx.photo(item.images[0])
        pair = sum(map(ord, item.item_id)) % 2 == 1
        yield VisualSentence(
            sentence_id=self.ctx.sentence_id([item.item_id], {"builder": "mixed"}), source=self.ctx.dataset,
            task="mirror" if pair else "image", layout="pairs" if pair else "single",
            images=[image, np.ascontiguousarray(image[:, ::-1])] if pair else [image],
            meta={"dataset": self.ctx.dataset, "item_id": item.item_id}, item_ids=[item.item_id])


def view_build(tmp: Path) -> str:
    """<tmp>/build: 'photos' (single, 4 items per unit, 3 failing files), 'classes' (category of 3) and
    'mixed' (two tasks and layouts, MixedBuilder)."""
    register_builtin()
    root = tmp / "inputs"
    _write_inputs(root)
    out = tmp / "build"
    cfg = BuildConfig.model_validate({"out": str(out), "seed": 7, "datasets": [
        {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
         "builder": "single", "items_per_unit": 4},
        {"name": "classes", "source": "image_folder", "source_args": {"root": str(root)},
         "builder": "category", "builder_args": {"images_per_sentence": 3}},
        {"name": "mixed", "source": "image_folder", "source_args": {"root": str(root / "good"), "labels": False},
         "builder": "tests.support.view_build:MixedBuilder", "items_per_unit": 3},
    ]})
    summary = build(cfg, use_ray=False)
    assert summary.succeeded, summary.report()
    return str(out)
