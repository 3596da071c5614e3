"""Tokenizer training: a small run learns (validation error below an untrained model) and saves LVM-style."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokenize_job.train_tokenizer import TrainConfig, load_images, reconstruction_error, train
from tokenize_job.encode import encode_images
from tokenize_job.vqgan import VQGAN, VQGANConfig, load_tokenizer
from uvd.storage import sha256_of
from tests.support.tokenizer import build_sentences
from uvd.cli import main as uvd_main


def test_trained_tokenizer_reconstructs_validation_images_better_than_fresh(tmp_path: Path) -> None:
    out, _ = build_sentences(tmp_path)
    tok = tmp_path / "tokenizer"
    rc = uvd_main(["tokenizer", "train", out, "--out", str(tok), "--steps", "40", "--batch-size", "8", "--threads", "1",
                   "--val-fraction", "0.3", "--name", "t"])
    assert rc == 0
    report = json.loads((tok / "training.json").read_text())
    assert report["val_images"] >= 1 and report["train_images"] >= 1
    assert report["val_mse"] < report["fresh_val_mse"] * 0.7
    model = load_tokenizer(tok)  # the saved checkpoint reloads strictly
    assert model.tokenizer_id == report["tokenizer_id"] and model.tokenizer_id.startswith("t-")
    images, _ = load_images(out, 4, 256)
    err = reconstruction_error(model, images)
    fresh = VQGAN(VQGANConfig.tiny()).eval()
    assert err < reconstruction_error(fresh, images)


def test_training_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    cfg = TrainConfig(steps=3, batch_size=2, crop=32, threads=1,
                      vqgan=VQGANConfig(resolution=64, hidden_channels=32, channel_mult=[1, 1, 1], num_res_blocks=1,
                                        attn_resolutions=[], no_attn_mid_block=True, z_channels=8,
                                        quantized_embed_dim=8, num_embeddings=32))
    shas = []
    for run in ("a", "b"):
        model, _ = train(images, images[:1], cfg, progress=lambda s: None)
        model.save_pretrained(tmp_path / run)
        shas.append(sha256_of(str(tmp_path / run / "pytorch_model.bin"))[0])
    assert shas[0] == shas[1]


def test_adversarial_and_warmup_options_train(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    vq = VQGANConfig(resolution=64, hidden_channels=32, channel_mult=[1, 1, 1], num_res_blocks=1,
                     attn_resolutions=[], no_attn_mid_block=True, z_channels=8, quantized_embed_dim=8, num_embeddings=32)
    cfg = TrainConfig(steps=4, batch_size=2, crop=32, threads=1, adversarial_weight=0.1, ae_warmup=0.5, vqgan=vq)
    model, report = train(images, images[:1], cfg, progress=lambda s: None)
    last = report["history"][-1]
    assert last["adversarial"] != 0.0 and last["vq"] > 0.0  # both terms active after the warmup
    assert report["history"][0]["vq"] == 0.0  # plain autoencoder during the warmup
    assert encode_images(model, images).max() < 32
