"""Hostile images (issue #23): memory bounded in any shape, byte caps, FIFOs and devices, odd names.
Inputs from tests/support/hostile_corpus.py; the table is in docs/hostile_inputs.md."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import uvd.image as ui
from sources.listing import list_files, suffix_of
from tests.support import hostile_corpus as hc
from uvd.config import ImageSpec
from uvd.errors import BadInput

ROOT = Path(__file__).resolve().parent.parent


def test_hostile_image_folder_every_file_ends_as_a_sentence_or_its_reason(tmp_path: Path) -> None:
    expect = hc.image_folder(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "image_folder",
                                              {"root": str(tmp_path / "in"), "labels": False}, seconds=60)
    assert summary.succeeded and not summary.failed_units
    assert {k: hc.kind(r) for k, r in audit.items()} == expect  # one row each: nothing lost, nothing hung
    assert problems == []


def _child(mode: str, budget_mib: int) -> dict[str, str]:
    import json

    r = subprocess.run([sys.executable, "-c", hc.MEMORY_CHILD, mode, str(budget_mib)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_extreme_aspect_ratios_decode_within_200_mib() -> None:
    # Under RLIMIT_AS = what the process has + 200 MiB. The 65000×1 JPEG took 13.5 GB before.
    assert _child("default", 200) == {"wide": "too_large", "tall": "too_large", "long": "ok"}
    # Without the aspect limit the crop before the resize alone keeps them small...
    assert _child("no_aspect_limit", 200) == {"wide": "ok", "tall": "ok", "long": "ok"}
    # ...and resizing the whole image first (the old way) does not fit: the limit is real.
    assert _child("resize_whole", 200)["wide"].startswith("crash")


@pytest.mark.parametrize("shape", [(100, 520), (60, 1400), (1300, 200), (257, 1300)])
def test_crop_before_resize_matches_the_full_resize(shape: tuple[int, int]) -> None:
    h, w = shape
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 255, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    spec = ImageSpec()
    cropped = ui.normalise(img, spec)
    t = ui.fit_transform(w, h, spec.size, spec.resize)
    whole = ui.resample(img, *t.resized)[int(-t.ty):int(-t.ty) + 256, int(-t.tx):int(-t.tx) + 256]
    assert cropped.shape == whole.shape == (256, 256, 3)
    assert np.abs(cropped.astype(int) - whole).mean() < 1.0


def test_aspect_limit_is_on_the_header() -> None:
    with pytest.raises(BadInput, match="aspect ratio"):
        ui.decode_image(hc.png(ui.MAX_ASPECT + 1, 1))
    assert ui.decode_image(hc.png(ui.MAX_ASPECT, 1)).shape == (1, ui.MAX_ASPECT, 3)


def test_dot_names_are_listed(tmp_path: Path) -> None:
    for name in ("..jpg", "...jpg", ".jpg", "a.b.JPG", "noext"):
        (tmp_path / name).write_bytes(b"x")
    assert suffix_of("..jpg") == suffix_of("...jpg") == ".jpg"
    assert [rel for rel, _ in list_files(str(tmp_path), [".jpg"])] == ["...jpg", "..jpg", ".jpg", "a.b.JPG"]
