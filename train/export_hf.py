"""`uvd export-hf RUN [--step N] --out DIR`: a training run's checkpoint as a LlamaForCausalLM folder."""
from __future__ import annotations

from pathlib import Path

import torch

from train import checkpoint
from train.config import Config
from train.hf_format import save_hf
from train.model import ModelArgs, Transformer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_hf(run_dir: str, step: int | None, out_dir: str, dtype: str = "float32") -> Path:
    """Write the run's latest (or `step`) weights with config.json and generation_config.json (eos id)."""
    ckpt = checkpoint.resolve(run_dir, step)
    cfg = Config.model_validate(checkpoint.read_train_state(ckpt)["config"])
    model = Transformer(ModelArgs.from_config(cfg.model))
    checkpoint.load_model_weights(ckpt, model)
    return save_hf(model, cfg.model, out_dir, cfg.data.eos_id, cfg.data.pad_id, DTYPES[dtype])
