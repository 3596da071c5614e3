"""CO3D v2 as multi-view sequences (sources/co3d.py), on sample_data/co3d/ (CO3D's release layout,
made by scripts/make_co3d_samples.py), against LVM's frame sampling in tokenize_co3d_muse.py:
randomly_subsample_frame_indices (ytongbai/LVM, evaluation/vqlm_demo/utils.py):

    max_stride = min((length - 1) // (n_frames - 1), max_stride)
    stride = np.random.randint(1, max_stride + 1)
    start = np.random.randint(0, length - (n_frames - 1) * stride)
    return np.arange(n_frames) * stride + start
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np

from tests.support.planned_build import planned_build
from uvd import codec

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data" / "co3d"


def lvm_subsample(length: int, n_frames: int, max_stride: int, rng: np.random.Generator) -> np.ndarray:
    max_stride = min((length - 1) // (n_frames - 1), max_stride)
    stride = rng.integers(1, max_stride + 1)
    start = rng.integers(0, length - (n_frames - 1) * stride)
    return np.arange(n_frames) * stride + start


def co3d(root: Path, **args) -> dict:
    return {"name": "co3d", "source": "co3d", "source_args": {"root": str(root), **args}, "builder": "video"}


def test_sequences_become_16_view_sentences_sampled_as_lvm_does(tmp_path: Path) -> None:
    rows, audit, _ = planned_build(tmp_path, co3d(SAMPLES))
    assert len(rows) == 2 and all(r["num_images"] == 16 and r["layout"] == "sequence" for r in rows)
    assert {r["task"] for r in rows} == {"multiview"}
    # LVM's possible (stride, start) for a 40-frame sequence, 16 views, max_stride 4
    lvm = {(int(i[1] - i[0]), int(i[0])) for i in (lvm_subsample(40, 16, 4, np.random.default_rng(s))
                                                   for s in range(400))}
    for r in rows:
        meta = json.loads(r["meta"])
        idx = meta["frame_indices"]
        assert (meta["stride"], meta["start"]) in lvm and meta["frames_in_sequence"] == 40
        assert idx == [meta["start"] + k * meta["stride"] for k in range(16)]
        assert meta["frame_numbers"] == [i + 1 for i in idx]  # CO3D numbers frames from 1 here
        assert meta["masks"][0].endswith(f"masks/frame{idx[0] + 1:06d}.png")
        assert codec.decode(r["images"][0]).shape == (256, 256, 3)
    short = [a for a in audit if a["status"] == "failed"]
    assert [(a["item_id"], a["reason"]) for a in short] == [("pancake/3_500_600", "too_short")]


def test_lvm_sampler_and_ours_draw_the_same_strides_and_starts() -> None:
    from sources.co3d import lvm_frame_indices

    ours = {(s, st) for s, st, _ in (lvm_frame_indices(40, 16, 4, np.random.default_rng(k)) for k in range(400))}
    lvm = {(int(i[1] - i[0]), int(i[0])) for i in (lvm_subsample(40, 16, 4, np.random.default_rng(k))
                                                   for k in range(400))}
    assert ours == lvm == {(s, st) for s in (1, 2) for st in range(40 - 15 * s)}


def test_a_broken_annotation_file_and_entry_are_audited(tmp_path: Path) -> None:
    root = tmp_path / "co3d"
    shutil.copytree(SAMPLES, root)
    with gzip.open(root / "pancake" / "frame_annotations.jgz", "rb") as f:
        entries = json.loads(f.read())
    entries.append({"sequence_name": "1_100_200", "frame_number": "seven"})
    with gzip.open(root / "pancake" / "frame_annotations.jgz", "wb") as f:
        f.write(json.dumps(entries).encode())
    (root / "broken").mkdir()
    (root / "broken" / "frame_annotations.jgz").write_bytes(b"\x1f\x8b not really gzip")
    rows, audit, _ = planned_build(tmp_path, co3d(root))
    reasons = {a["item_id"]: a["reason"] for a in audit if a["status"] == "failed"}
    assert reasons == {"pancake/3_500_600": "too_short", "bad_file:broken/frame_annotations.jgz": "bad_file",
                       f"entry:pancake:{len(entries) - 1}": "bad_annotation"}
    assert len(rows) == 2
