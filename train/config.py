"""The typed training config (torchtitan-style sections), loaded from YAML with clear errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from uvd.config import Strict, read_yaml_mapping, parse_model
from uvd.errors import ConfigError

CODEBOOK_SIZE = 8192
# 8192 image codes + 100 special ids, as LVM's vqlm_* configs ("8K vq tokens + 100 special tokens",
# EasyLM/models/llama/llama_model.py in ytongbai/LVM). LVM's released training command packs the
# codes with no separator, so it fixes no end-of-sentence id; ours (data.eos_id 8193, pad 8192) lie
# in the same reserved range, so LVM's checkpoints load with this vocabulary unchanged.
VOCAB_SIZE = 8292

# LVM's sizes (Bai et al. 2023, table 5): hidden, MLP, layers, heads. "tiny" is ours (tests, demo).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 64, "mlp_dim": 176, "n_layers": 2, "n_heads": 4},
    "300m": {"dim": 1024, "mlp_dim": 2688, "n_layers": 22, "n_heads": 8},
    "600m": {"dim": 1536, "mlp_dim": 4096, "n_layers": 22, "n_heads": 16},
    "1b": {"dim": 2048, "mlp_dim": 5504, "n_layers": 22, "n_heads": 16},
    "3b": {"dim": 3200, "mlp_dim": 8640, "n_layers": 26, "n_heads": 32},
    "7b": {"dim": 4096, "mlp_dim": 11008, "n_layers": 32, "n_heads": 32},
}


class ModelConfig(Strict):
    size: Literal["tiny", "300m", "600m", "1b", "3b", "7b", "custom"] = "tiny"
    # Explicit dimensions override the size's; with size "custom" all four are required.
    dim: int | None = Field(None, ge=8)
    mlp_dim: int | None = Field(None, ge=8)
    n_layers: int | None = Field(None, ge=1)
    n_heads: int | None = Field(None, ge=1)
    vocab_size: int = Field(VOCAB_SIZE, ge=CODEBOOK_SIZE + 2)
    codebook_size: int = Field(CODEBOOK_SIZE, ge=2)
    max_seq_len: int = Field(4096, ge=8)
    # LVM (EasyLM's LLaMA, vqlm_* configs): rope θ 10000 (EasyLM rotates interleaved pairs; its
    # HF conversion permutes q/k into the rotate_half layout we use, so θ carries over), RMSNorm
    # eps 1e-6, every matrix initialised N(0, 0.02), none rescaled by depth.
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    # True: GPT-2's N(0, init_std / √(2·layers)) for o_proj and down_proj (the projections into the
    # residual stream). Not LVM's; kept as an option because it trains more stably from scratch at depth.
    scaled_residual_init: bool = False

    @model_validator(mode="after")
    def _dims(self) -> "ModelConfig":
        base = MODEL_SIZES.get(self.size, {})
        for k in ("dim", "mlp_dim", "n_layers", "n_heads"):
            if getattr(self, k) is None and k not in base:
                raise ValueError(f"size 'custom' needs {k}")
        if self.resolved("dim") % self.resolved("n_heads"):
            raise ValueError("dim must be a multiple of n_heads")
        if (self.resolved("dim") // self.resolved("n_heads")) % 2:
            raise ValueError("head dim (dim / n_heads) must be even for rotary embeddings")
        return self

    def resolved(self, key: str) -> int:
        value = getattr(self, key)
        return int(value if value is not None else MODEL_SIZES[self.size][key])


class MixtureConfig(Strict):
    # Shares of training *tokens* per group; a group is a source, a task or "source/task".
    by: Literal["source", "task", "source_task"] = "source"
    weights: dict[str, float] = Field(default_factory=dict)
    # Weight of groups present in the data but not named; None makes them an error (no silent drift).
    default: float | None = None

    @model_validator(mode="after")
    def _nonnegative(self) -> "MixtureConfig":
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"mixture weights must be >= 0: {bad}")
        return self


class DataConfig(Strict):
    # Token folders (<out>/tokens/<tokenizer-id>) or a build output (<out>: every tokenizer under it).
    tokens: list[str]
    seq_len: int = Field(4096, ge=2)
    # Rows are seq_len + 1 tokens: inputs row[:-1], targets row[1:].
    align_sentences: bool = False  # True: each row starts at a sentence start, padded at the end
    mixture: MixtureConfig | None = None
    eos_id: int = Field(8193, ge=0)
    pad_id: int = Field(8192, ge=0)
    piece_rows: int = Field(1024, ge=1)  # sentences per unit of work handed to a rank/worker
    open_pieces: int = Field(4, ge=1)  # pieces a worker interleaves (local shuffle)
    num_workers: int = Field(0, ge=0)  # DataLoader workers per rank

    @model_validator(mode="after")
    def _ids(self) -> "DataConfig":
        if not CODEBOOK_SIZE <= self.eos_id < VOCAB_SIZE or not CODEBOOK_SIZE <= self.pad_id < VOCAB_SIZE:
            raise ValueError(f"eos_id and pad_id must be special ids in [{CODEBOOK_SIZE}, {VOCAB_SIZE})")
        if self.eos_id == self.pad_id:
            raise ValueError("eos_id and pad_id must differ")
        return self


class OptimConfig(Strict):
    lr: float = Field(1.5e-4, gt=0)
    min_lr: float = Field(3e-5, ge=0)
    warmup_steps: int = Field(8000, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping


class TrainConfig(Strict):
    out: str = "out/train"
    seed: int = 0
    steps: int = Field(100, ge=1)  # optimizer steps; also the length of the cosine schedule
    batch_size: int = Field(8, ge=1)  # rows per micro-batch per rank
    grad_accum: int = Field(1, ge=1)
    # Rows per optimizer step over all ranks; set, it fixes grad_accum = global_batch / (batch_size × ranks).
    # A resumed run keeps its checkpoint's global batch at any world size.
    global_batch: int | None = Field(None, ge=1)
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: FSDP from 1B parameters up, else DDP
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    # auto: on GPU (1B at seq 4096 on one H200: 55% MFU compiled, 37% eager), off on CPU
    compile: bool | Literal["auto"] = "auto"
    threads: int = Field(0, ge=0)  # torch CPU threads per process; 0 = torch's default
    log_every: int = Field(10, ge=1)
    ckpt_every: int = Field(1000, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    async_checkpoint: bool = False  # DCP async_save: training goes on while shards are written
    # True: move the run's checkpoints, log and config aside (<out>/before-restart-<time>/) and start at
    # step 0. Every launch with it set does so again: give it for one launch (`uvd train --restart`).
    restart: bool = False
    peak_flops: float | None = None  # per device, for MFU; None: known GPUs, or measured on CPU


class Config(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _fits(self) -> "Config":
        if self.data.seq_len > self.model.max_seq_len:
            raise ValueError(f"data.seq_len {self.data.seq_len} > model.max_seq_len {self.model.max_seq_len}")
        if max(self.data.eos_id, self.data.pad_id) >= self.model.vocab_size:
            raise ValueError("data.eos_id / data.pad_id must be < model.vocab_size")
        return self


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`section.key=value` strings (value parsed as YAML) → a flat dict of dotted keys."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected section.key=value")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    path = Path(path)
    data = read_yaml_mapping(path)  # ${VAR:-default}, as build configs
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    # Relative token folders and the output are relative to the config file, like build configs.
    tokens = (data.get("data") or {}).get("tokens")
    if isinstance(tokens, str):
        data["data"]["tokens"] = tokens = [tokens]
    if isinstance(tokens, list):
        data["data"]["tokens"] = [_rel(t, path.parent) for t in tokens]
    if isinstance(data.get("train"), dict) and "out" in data["train"]:
        data["train"]["out"] = _rel(data["train"]["out"], path.parent)
    return parse_model(Config, data, str(path))


def _rel(value: Any, base: Path) -> Any:
    if isinstance(value, str) and (value.startswith("./") or value.startswith("../")):
        return str((base / value).resolve())
    return value
