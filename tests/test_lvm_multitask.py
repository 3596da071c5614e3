"""Golden test against LVM's multi-task script (ytongbai/LVM, tokenize_examples/tokenize_multi_datasets_muse.py;
flags n_shots=3, n_epochs=5, shuffle_tasks=True, batch_size=8). Its sampling, from main():

    input_images = match_mulitple_path_v2(...)      # per image id: its 5 files (photo + 4 labels)
    random.shuffle(input_images)
    total_images = len(input_images) - len(input_images) % (FLAGS.batch_size * FLAGS.n_shots)
    for _ in range(FLAGS.n_epochs):
        indices = np.random.permutation(total_images).reshape(-1, FLAGS.n_shots)
        for i in range(indices.shape[0]):
            tokens = all_tokens[indices[i], :]                       # shots × (modalities · 256)
            tokens = rearrange(tokens, 'b (s t) -> b s t', t=256)
            if FLAGS.shuffle_tasks:
                tokens = tokens[:, np.random.permutation(tokens.shape[1]), :]   # one order, every shot

UVD cuts the dataset to a multiple of n_shots (LVM's batch_size × n_shots = 24 is a batching
artifact); with 26 images both keep 24 and write 8 sentences of 3 shots × 5 modalities per epoch.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.planned_build import planned_build
from uvd import codec

N = 26
MODALITIES = [{"name": "edges", "task": "edges"}, {"name": "grey", "task": "colorization", "image": 0},
              {"name": "dark", "task": "lowlight", "image": 0}, {"name": "holes", "task": "inpainting", "image": 0}]


def lvm_multi_sampling(n: int, n_shots: int = 3, n_epochs: int = 5, batch_size: int = 8, n_modalities: int = 5,
                       rng: np.random.Generator | None = None) -> list[list[tuple[list[int], list[int]]]]:
    """Per epoch, per sentence: (image indices, modality order)."""
    rng = rng or np.random.default_rng()
    images = list(rng.permutation(n))  # random.shuffle(input_images)
    total = n - n % (batch_size * n_shots)
    return [[([int(images[j]) for j in row], rng.permutation(n_modalities).tolist())
             for row in rng.permutation(total).reshape(-1, n_shots)] for _ in range(n_epochs)]


def photo(i: int) -> bytes:
    yy, xx = np.mgrid[0:48, 0:48]
    img = np.stack([(xx * 5 + 11 * i) % 256, (yy * 5 + 3 * i) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_multitask_sentences_follow_lvms_sampling(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(N):
        (root / f"im{i:03d}.jpg").write_bytes(photo(i))
    rows, audit, _ = planned_build(tmp_path, {
        "name": "multi", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
        "builder": "multitask", "builder_args": {"tasks": MODALITIES}, "items_per_unit": 12})
    lvm = lvm_multi_sampling(N, rng=np.random.default_rng(0))
    epochs: dict[int, list[dict]] = {}
    for r in rows:
        epochs.setdefault(json.loads(r["meta"])["epoch"], []).append(r)
    assert sorted(epochs) == list(range(len(lvm))) == list(range(5))
    orders = set()
    for e, sentences in epochs.items():
        assert len(sentences) == len(lvm[e]) == 8
        kept = [i for r in sentences for i in json.loads(r["meta"])["item_ids"]]
        assert len(kept) == len(set(kept)) == sum(len(s) for s, _ in lvm[e]) == 24
        for r in sentences:
            meta = json.loads(r["meta"])
            assert r["num_images"] == 15 and r["layout"] == "multitask" and len(meta["item_ids"]) == 3
            assert sorted(meta["order"]) == sorted(["image", "edges", "grey", "dark", "holes"])
            orders.add(tuple(meta["order"]))
            imgs = [codec.decode(b).astype(int) for b in r["images"]]
            for shot in range(3):  # the same order in every shot: the photo and the grey where the order says
                block = dict(zip(meta["order"], imgs[5 * shot:5 * shot + 5]))
                grey, image = block["grey"], block["image"]
                assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 3 < np.abs(image[..., 0] - image[..., 2]).mean()
                assert np.abs(block["dark"]).mean() < np.abs(image).mean() / 2
    assert len(orders) > 5  # shuffled per sentence (40 sentences, 120 possible orders)
    assert sum(r["reason"] == "remainder" for r in audit) == 2 * 5


def test_a_missing_modality_leaves_it_out_of_its_sentence_only(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(6):
        (root / f"im{i:03d}.jpg").write_bytes(photo(i))
    tasks = [{"name": "edges", "task": "edges"}, {"name": "pose", "task": "pose"}]  # no people: pose is empty
    rows, audit, _ = planned_build(tmp_path, {
        "name": "multi", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
        "builder": "multitask", "builder_args": {"tasks": tasks, "epochs": 1}})
    assert len(rows) == 2 and all(r["num_images"] == 6 for r in rows)  # 3 shots × (image, edges)
    meta = json.loads(rows[0]["meta"])
    assert sorted(meta["order"]) == ["edges", "image"] and all("pose" in m for m in meta["missing"].values())
    assert all(r["status"] == "ok" for r in audit)
