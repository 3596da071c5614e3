"""Visual prompting: images → codes → the model continues the visual sentence → codes → images.

Sequential prompting gives frames and asks for the next ones; analogy prompting gives pairs
x1 y1 … xn yn and a query x, and asks for its y. Both are the same computation — the prompt is
the images' codes one after another, as in training — so `mode` only checks the prompt's shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from train import checkpoint
from train.config import Config, ModelConfig
from train.model import KVCache, ModelArgs, Transformer
from uvd import codec
from uvd.config import ImageSpec
from uvd.image import to_sentence_image


def load_model(ckpt: str, device: str = "cpu", step: int | None = None) -> tuple[Transformer, ModelConfig]:
    """The model of a Hugging Face LlamaForCausalLM folder (e.g. `uvd export-hf`'s, or LVM's released
    checkpoints converted to that format), of a checkpoint folder, or of a run folder's latest (or
    `step`) checkpoint. HF weights are loaded into our Transformer: one model, one KV cache."""
    from train.hf_format import is_hf_folder, load_hf

    if is_hf_folder(ckpt):
        model, mcfg = load_hf(ckpt)
        return model.to(device).eval(), mcfg
    cfg = Config.model_validate(checkpoint.read_train_state(checkpoint.resolve(ckpt, step))["config"])
    model = Transformer(ModelArgs.from_config(cfg.model))
    checkpoint.load_model_weights(ckpt, model, step)
    return model.to(device).eval(), cfg.model


def read_prompt_images(paths: list[str], size: int) -> np.ndarray:
    """Image files → [N, size, size, 3] uint8, normalised the way sentence images are."""
    spec = ImageSpec(size=size)
    return np.stack([to_sentence_image(Path(p).read_bytes(), spec) for p in paths])


@torch.no_grad()
def sample_image(model: Transformer, context: torch.Tensor, tokens_per_image: int, codebook: int,
                 temperature: float, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """`tokens_per_image` new codes after `context` [1, T]; special ids and codes the tokenizer
    lacks are never sampled."""
    cache = KVCache(model.args.n_layers)
    logits = model(context, cache)[:, -1]
    out = torch.empty(tokens_per_image, dtype=torch.long)
    for i in range(tokens_per_image):
        logits = logits[:, :codebook]
        if temperature <= 0:
            nxt = logits.argmax(-1)
        else:
            logits = logits / temperature
            if 0 < top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        out[i] = nxt.item()
        if i + 1 < tokens_per_image:
            logits = model(nxt.view(1, 1), cache)[:, -1]
    return out


def continue_sentence(model: Transformer, prompt_codes: np.ndarray, new: int, codebook: int,
                      temperature: float = 1.0, top_k: int = 100, seed: int = 0) -> np.ndarray:
    """[N, tokens_per_image] prompt codes → [new, tokens_per_image] generated codes.

    Each new image sees as many of the latest images as fit in the model's context.
    """
    n, tpi = prompt_codes.shape
    fit = model.args.max_seq_len // tpi - 1  # images of context that leave room for one new image
    if fit < 1:
        raise ValueError(f"max_seq_len {model.args.max_seq_len} holds less than two images of {tpi} tokens")
    device = next(model.parameters()).device
    images = [torch.as_tensor(c.astype(np.int64)) for c in prompt_codes]
    gen = torch.Generator().manual_seed(seed)
    made = []
    for _ in range(new):
        context = torch.cat(images[-fit:]).view(1, -1).to(device)
        codes = sample_image(model, context, tpi, codebook, temperature, top_k, gen)
        images.append(codes)
        made.append(codes.numpy())
    return np.stack(made).astype(np.uint16)


def check_prompt(mode: str, n_images: int, new: int) -> None:
    if n_images < 1:
        raise ValueError("prompt: give at least one image")
    if mode == "analogy" and (n_images < 3 or n_images % 2 == 0):
        raise ValueError(f"analogy prompt: pairs plus one query (an odd number ≥ 3 of images), got {n_images}")
    if new < 1:
        raise ValueError("--new must be ≥ 1")


def generate(ckpt: str, tokenizer_dir: str, image_paths: list[str], out_dir: str, new: int = 1,
             mode: Literal["sequential", "analogy"] = "sequential", temperature: float = 1.0, top_k: int = 100,
             seed: int = 0, device: str = "cpu") -> list[Path]:
    """Write the generated images as PNGs (plus a strip: prompt, then generated); return their paths."""
    from tokenize_job.encode import decode_codes, encode_images
    from tokenize_job.vqgan import load_tokenizer

    check_prompt(mode, len(image_paths), new)
    model, cfg = load_model(ckpt, device)
    tokenizer = load_tokenizer(tokenizer_dir, device=device)
    size = tokenizer.config.resolution
    prompt = read_prompt_images(image_paths, size)
    codes = encode_images(tokenizer, prompt)
    codebook = min(cfg.codebook_size, tokenizer.config.num_embeddings)
    made = continue_sentence(model, codes, new, codebook, temperature, top_k, seed)
    pixels = decode_codes(tokenizer, made)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(pixels):
        p = out / f"generated-{i:02d}.png"
        p.write_bytes(codec.encode(img, lossless=True))
        paths.append(p)
    strip = np.concatenate([*prompt, *pixels], axis=1)
    (out / "prompt_and_generated.png").write_bytes(codec.encode(strip, lossless=True))
    return paths

