"""Golden tests against LVM's pair scripts (ytongbai/LVM), their sampling reimplemented from source:

tokenize_examples/tokenize_paired_dataset_muse.py (n_shots=8, n_epochs=5),
tokenize_examples/tokenize_colorization_dataset_muse.py (n_shots=8, n_epochs=2),
tokenize_examples/tokenize_inpainting_dataset_muse.py (n_shots=8, n_epochs=5); in each, main() does

    total_images = len(input_images) - len(input_images) % (FLAGS.batch_size * FLAGS.n_shots)
    for _ in trange(FLAGS.n_epochs):
        indices = np.random.permutation(total_images).reshape(-1, FLAGS.n_shots)
        for i in range(indices.shape[0]):
            tokens = all_tokens[indices[i], :]   # each row: the input's 256 tokens then the output's

so a sentence is x1, y1, …, x8, y8, every epoch a fresh permutation (the first too) of the first
`total_images` files in sorted order (the last `len % 8` are never used). UVD's default
(`remainder: tail`) builds the same layout, counts and kept files per epoch; its permutations are
seeded (LVM's are not). `remainder: fresh` leaves out a new random set each epoch instead.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.planned_build import planned_build
from uvd import codec


def lvm_pair_sampling(names: list[str], n_shots: int, n_epochs: int, batch_size: int = 1,
                      rng: np.random.Generator | None = None) -> list[list[list[str]]]:
    """The three scripts' sampling: per epoch, the sentences' file names in order."""
    rng = rng or np.random.default_rng()
    names = sorted(names)
    total_images = len(names) - len(names) % (batch_size * n_shots)
    return [[[names[j] for j in row] for row in rng.permutation(total_images).reshape(-1, n_shots)]
            for _ in range(n_epochs)]


def colour(i: int) -> np.ndarray:
    return np.array([(37 * i) % 256, (91 * i + 40) % 256, (53 * i + 80) % 256], np.uint8)


def png(rgb: np.ndarray, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.broadcast_to(rgb, (size, size, 3)).copy()).save(buf, "PNG")
    return buf.getvalue()


def textured_jpeg(i: int) -> bytes:
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.stack([(xx * 4 + 9 * i) % 256, (yy * 4) % 256, np.full_like(xx, (37 * i) % 256)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def sentences_by_epoch(rows: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(json.loads(r["meta"]).get("epoch", 0), []).append(r)
    return out


N = 43  # 5 sentences of 8 pairs per epoch, 3 over


def check_against_lvm(rows: list[dict], audit: list[dict], names: list[str], epochs: int, fresh: bool = False) -> None:
    lvm = lvm_pair_sampling(names, n_shots=8, n_epochs=epochs, rng=np.random.default_rng(0))
    ours = sentences_by_epoch(rows)
    assert sorted(ours) == list(range(epochs)) == list(range(len(lvm)))
    used_somewhere: set[str] = set()
    for e in range(epochs):
        groups = [json.loads(r["meta"])["item_ids"] for r in ours[e]]
        assert len(groups) == len(lvm[e]) == 5  # sentences per epoch
        assert all(len(g) == 8 for g in groups) and all(r["num_images"] == 16 for r in ours[e])
        kept = [i for g in groups for i in g]
        assert len(kept) == len(set(kept)) == sum(len(s) for s in lvm[e]) == 40  # a permutation: each once
        if not fresh:  # LVM's kept files exactly: the first 40 in sorted order
            assert set(kept) == {n for s in lvm[e] for n in s}
        used_somewhere.update(kept)
    # the first epoch is permuted too (LVM draws before its first epoch): not the sorted order
    first = [json.loads(r["meta"])["item_ids"] for r in ours[0]]
    assert first != [sorted(names)[i:i + 8] for i in range(0, 40, 8)]
    # left out per epoch, audited: LVM's fixed tail (never used), or with `fresh` a new set each epoch
    left_out = [r for r in audit if r["reason"] == "remainder"]
    assert len(left_out) == 3 * epochs
    lvm_never = set(sorted(names)[40:])
    assert not lvm_never & {n for s in lvm[0] for n in s}
    if not fresh:
        assert {r["item_id"] for r in left_out} == lvm_never and not lvm_never & used_somewhere
    elif epochs >= 5:
        assert used_somewhere == set(names)  # (3/43)^5 per item to miss every epoch: ~1.7e-6


@pytest.mark.parametrize("remainder", ["tail", "fresh"])
def test_paired_script_derain(tmp_path: Path, remainder: str) -> None:
    for d in ("rain", "clean"):
        (tmp_path / d).mkdir()
    names = [f"{i:04d}" for i in range(N)]
    for i, n in enumerate(names):
        (tmp_path / "rain" / f"{n}.png").write_bytes(png(colour(i)))
        (tmp_path / "clean" / f"{n}.png").write_bytes(png(255 - colour(i)))
    rows, audit, _ = planned_build(tmp_path, {
        "name": "derain", "source": "paired", "builder": "pairs", "builder_args": {"task": "derain", "remainder": remainder},
        "source_args": {"inputs": str(tmp_path / "rain"), "targets": str(tmp_path / "clean"), "task": "derain"}})
    check_against_lvm(rows, audit, names, epochs=5, fresh=remainder == "fresh")  # the paired script's n_epochs
    for r in rows:  # x1, y1, x2, y2, …: each input followed by its own target
        for k, item_id in enumerate(json.loads(r["meta"])["item_ids"]):
            x, y = codec.decode(r["images"][2 * k]), codec.decode(r["images"][2 * k + 1])
            i = int(item_id)
            assert np.abs(x.astype(int) - colour(i)).mean() < 3 and np.abs(y.astype(int) - (255 - colour(i))).mean() < 3


@pytest.mark.parametrize("task, epochs", [("colorization", 2), ("inpainting", 5)])
def test_colorization_and_inpainting_scripts(tmp_path: Path, task: str, epochs: int) -> None:
    (tmp_path / "photos").mkdir()
    names = [f"p{i:03d}.jpg" for i in range(N)]
    for i, n in enumerate(names):
        (tmp_path / "photos" / n).write_bytes(textured_jpeg(i))
    rows, audit, _ = planned_build(tmp_path, {
        "name": task, "source": "image_folder", "source_args": {"root": str(tmp_path / "photos"), "labels": False},
        "builder": "pairs", "builder_args": {"task": task}})
    check_against_lvm(rows, audit, names, epochs=epochs)
    x, y = codec.decode(rows[0]["images"][0]).astype(int), codec.decode(rows[0]["images"][1]).astype(int)
    if task == "colorization":  # grey then colour
        assert np.abs(x[..., 0] - x[..., 1]).max() <= 2 and np.abs(y[..., 0] - y[..., 1]).mean() > 10
    else:  # masked then whole: the hidden pixels are black
        hidden = np.abs(x - y).sum(-1) > 60
        assert hidden.mean() > 0.05 and (x[hidden].sum(-1) < 60).mean() > 0.95  # JPEG rings at the edges
