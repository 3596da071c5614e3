"""Train a VQGAN of any config on the images of sentence shards; save it in the LVM checkpoint layout.

Losses: L1 + MSE reconstruction, codebook + commitment (the quantizer's), and optionally a
PatchGAN hinge loss (`adversarial_weight > 0`). No perceptual (LPIPS) term: it needs
pretrained VGG weights, which are never downloaded here.

Most steps train on random crops (a 64 px crop costs 16× less than a whole image, which is what
makes a CPU demo tokenizer possible in a couple of minutes); the last `full_finetune` fraction
trains on whole images, because crop-only training does not transfer (GroupNorm statistics and
borders differ on a whole image).
The codebook is initialised on encoder outputs and dead codes are restarted from recent
latents, so that a short run still uses its codebook. Optionally (`ae_warmup`) the first steps
train a plain autoencoder and the codebook is initialised on its latents.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenize_job.encode import decode_codes, encode_images
from tokenize_job.vqgan import VQGAN, VQGANConfig
from uvd.progress import progress as progress_bar

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 16
    crop: int = 64  # 0 = whole images
    lr: float = 1e-3
    seed: int = 0
    max_images: int = 2000  # images read from the shards (deterministic order)
    val_fraction: float = 0.1
    # Fraction of the last steps trained on whole images (same pixels per step as the crops).
    # Crops alone do not transfer: GroupNorm's statistics and the borders differ on a whole
    # image (measured: crop MSE 0.007 but whole-image MSE 0.10 after crop-only training).
    full_finetune: float = 0.3
    restart_dead_every: int = 25  # steps between dead-code restarts; 0 = never
    # Fraction of steps trained as a plain autoencoder before quantizing (codebook then initialised
    # on trained latents). Helped when overfitting one batch; hurt the 200-step demo run, so off.
    ae_warmup: float = 0.0
    adversarial_weight: float = 0.0
    adversarial_start: int = 0  # step at which the discriminator starts to count
    mse_weight: float = 1.0
    l1_weight: float = 1.0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    vqgan: VQGANConfig = field(default_factory=VQGANConfig.tiny)


def load_images(sentences_url: str, max_images: int, resolution: int) -> tuple[np.ndarray, list[str]]:
    """Decoded images of committed sentence shards (in shard/row order), with their sentence ids."""
    from tokenize_job.job import find_sentence_units
    from uvd import codec
    from uvd.shards import iter_rows

    images, ids = [], []
    for u in find_sentence_units(sentences_url):
        for row in iter_rows(u.sentences, columns=["sentence_id", "images"]):
            for data in row["images"]:
                try:
                    img = codec.decode(data)
                except Exception:  # a bad stored image is simply not trained on
                    continue
                if img.shape[:2] == (resolution, resolution):
                    images.append(img)
                    ids.append(row["sentence_id"])
                if len(images) >= max_images:
                    return np.stack(images), ids
    if not images:
        raise ValueError(f"tokenizer train: no {resolution}x{resolution} images found under {sentences_url}")
    return np.stack(images), ids


def split_validation(ids: list[str], fraction: float) -> np.ndarray:
    """Validation mask chosen by sentence id (stable: not by position), at least one image each side."""
    import hashlib

    score = np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for i in ids])
    mask = score < fraction
    if len(ids) > 1 and (mask.all() or not mask.any()):
        mask = np.zeros(len(ids), bool)
        mask[int(np.argmin(score))] = True
    return mask


def reconstruction_error(model: VQGAN, images: np.ndarray) -> float:
    """Mean squared error in [0,1] units after the real token path: encode → codes → decode."""
    recon = decode_codes(model, encode_images(model, images))
    return float(np.mean((recon.astype(np.float32) / 255.0 - images.astype(np.float32) / 255.0) ** 2))


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (taming's NLayerDiscriminator, shallower) for the optional adversarial term."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.GroupNorm(32, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        mods += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def _crops(images: np.ndarray, rng: np.random.Generator, batch: int, crop: int) -> torch.Tensor:
    idx = rng.integers(0, len(images), batch)
    h, w = images.shape[1:3]
    if crop <= 0 or crop >= h:
        out = images[idx]
    else:
        ys, xs = rng.integers(0, h - crop + 1, batch), rng.integers(0, w - crop + 1, batch)
        out = np.stack([images[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])
    flips = rng.random(batch) < 0.5
    out = np.where(flips[:, None, None, None], out[:, :, ::-1], out)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).float() / 255.0


def _init_codebook(model: VQGAN, x: torch.Tensor, gen: torch.Generator) -> None:
    """Start the codebook on encoder outputs: random tiny codes would leave all but a few unused."""
    with torch.no_grad():
        z = model.encode_latent(x).permute(0, 2, 3, 1).reshape(-1, model.config.quantized_embed_dim)
        k = model.config.num_embeddings
        pick = torch.randint(0, len(z), (k,), generator=gen)
        noise = torch.randn(k, z.shape[1], generator=gen) * z.std() * 0.01
        model.quantize.embedding.weight.copy_(z[pick] + noise)


def _restart_dead(model: VQGAN, z: torch.Tensor, usage: torch.Tensor, gen: torch.Generator) -> int:
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return 0
    with torch.no_grad():
        pick = torch.randint(0, len(z), (len(dead),), generator=gen)
        noise = torch.randn(len(dead), z.shape[1], generator=gen) * z.std() * 0.01
        model.quantize.embedding.weight[dead] = z[pick].detach() + noise
    return len(dead)


def train(images: np.ndarray, val: np.ndarray, cfg: TrainConfig,
          progress: Callable[[str], None] = logger.info) -> tuple[VQGAN, dict[str, Any]]:
    """Train from scratch; deterministic for a given config, images and thread count."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = VQGAN(cfg.vqgan)
    model.train()
    # taming's betas; on the 200-step demo run they beat (0.9, 0.99): val MSE 0.110 vs 0.142
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * (1 - s / max(1, cfg.steps))))
    disc = d_opt = None
    if cfg.adversarial_weight > 0:
        disc = PatchDiscriminator()
        d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    warmup = int(cfg.ae_warmup * cfg.steps)
    full_from = cfg.steps - int(cfg.full_finetune * cfg.steps) if cfg.crop > 0 else cfg.steps
    res = images.shape[1]
    full_batch = max(1, round(cfg.batch_size * cfg.crop ** 2 / res ** 2))
    if warmup == 0:
        _init_codebook(model, _crops(images, rng, max(cfg.batch_size, 64), cfg.crop), gen)
    usage = torch.zeros(cfg.vqgan.num_embeddings, dtype=torch.long)
    history: list[dict[str, float]] = []
    restarted = 0
    t0 = time.perf_counter()
    bar = progress_bar(cfg.steps, "tokenizer train", "step")
    for step in range(cfg.steps):
        if step == warmup and warmup > 0:
            model.eval()  # dropout off while sampling latents for the codebook
            _init_codebook(model, _crops(images, rng, max(cfg.batch_size, 64), cfg.crop), gen)
            model.train()
        if step >= full_from:
            x = _crops(images, rng, full_batch, 0)
        else:
            x = _crops(images, rng, cfg.batch_size, cfg.crop)
        z = model.encode_latent(x)
        if step < warmup:
            zq, idx, vq_loss = z, None, torch.zeros(())
        else:
            zq, idx, vq_loss = model.quantize(z)
        recon = model.decode(zq)
        rec = cfg.l1_weight * (recon - x).abs().mean() + cfg.mse_weight * F.mse_loss(recon, x)
        loss = rec + vq_loss
        adv = torch.zeros(())
        if disc is not None and step >= cfg.adversarial_start:
            adv = -disc(recon).mean()
            loss = loss + cfg.adversarial_weight * adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if disc is not None and d_opt is not None and step >= cfg.adversarial_start:
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(recon.detach())).mean()
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        if idx is not None:
            usage += torch.bincount(idx.flatten(), minlength=cfg.vqgan.num_embeddings)
        if (idx is not None and cfg.restart_dead_every and (step + 1 - warmup) % cfg.restart_dead_every == 0
                and step + 1 < cfg.steps * 0.8):
            flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            restarted += _restart_dead(model, flat, usage, gen)
            usage.zero_()
        if step % 25 == 0 or step == cfg.steps - 1:
            rec_v, vq_v = rec.item(), vq_loss.item()
            history.append({"step": step, "reconstruction": round(rec_v, 5), "vq": round(vq_v, 5), "adversarial": round(adv.item(), 5)})
            progress(f"  step {step:4d}/{cfg.steps}  rec {rec_v:.4f}  vq {vq_v:.4f}  "
                     f"{(step + 1) / (time.perf_counter() - t0):.1f} steps/s")
        bar.update(1, items=len(x))
    bar.close()
    model.eval()
    report = {"history": history, "restarted_codes": restarted, "seconds": round(time.perf_counter() - t0, 2),
              "train_images": len(images), "val_images": len(val)}
    return model, report


def train_from_shards(sentences_url: str, out_dir: str | Path, cfg: TrainConfig, name: str = "uvd-vqgan",
                      progress: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Read images, train, measure validation reconstruction error vs an untrained model, save."""
    images, ids = load_images(sentences_url, cfg.max_images, cfg.vqgan.resolution)
    mask = split_validation(ids, cfg.val_fraction)
    train_imgs, val_imgs = images[~mask], images[mask]
    progress(f"tokenizer train: {len(train_imgs)} training and {len(val_imgs)} validation images, "
             f"{cfg.steps} steps of {cfg.batch_size}×{cfg.crop or cfg.vqgan.resolution}px")
    torch.manual_seed(cfg.seed + 1)
    fresh_err = reconstruction_error(VQGAN(cfg.vqgan).eval(), val_imgs)
    model, report = train(train_imgs, val_imgs, cfg, progress)
    val_err = reconstruction_error(model, val_imgs)
    codes = encode_images(model, val_imgs)
    report.update({"val_mse": val_err, "fresh_val_mse": fresh_err,
                   "val_psnr": float(10 * np.log10(1.0 / max(val_err, 1e-12))),
                   "val_codes_used": int(len(np.unique(codes))), "config": asdict(cfg)})
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, name=name)
    report["tokenizer_id"] = model.tokenizer_id
    (out_dir / "training.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    progress(f"tokenizer train: validation MSE {val_err:.5f} (PSNR {report['val_psnr']:.1f} dB) vs untrained "
             f"{fresh_err:.5f}; {report['val_codes_used']} codes used; saved {out_dir} ({model.tokenizer_id})")
    return report
