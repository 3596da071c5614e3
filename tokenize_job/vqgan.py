"""The LVM tokenizer: open-MUSE's taming-style VQGAN, built from any config, loaded strictly.

Module and parameter names mirror open-MUSE's `muse/modeling_taming_vqgan.py` exactly, so the
LVM release (`config.json` + `pytorch_model.bin`) loads with `strict=True`. The network takes
pixels in [0, 1] (as LVM did); tokenize_job.encode turns uint8 RGB images into codes and back.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tokenize_job.codebook_search import nearest_codes
from uvd.storage import sha256_of
from uvd.weights import read_state_dict

CONFIG_NAME = "config.json"
# VQGANConfig fields that exist only on open-MUSE's `vqgan-finetuning` branch (a deeper/wider decoder)
EXTENSION_KEYS = ("decoder_res_blocks", "extra_mid_res_blocks", "decoder_hidden_channels", "decoder_channel_mult")
SAVE_NAME = "pytorch_model.bin"  # open-MUSE's WEIGHTS_NAME: what its from_pretrained reads
# Weights file names, tried in this order (safetensors first: no pickle). open-MUSE's ModelMixin
# saves pytorch_model.safetensors / pytorch_model.bin (muse/modeling_utils.py: SAFETENSORS_WEIGHTS_NAME,
# WEIGHTS_NAME); LVM released pytorch_model.bin; transformers-style folders hold model.safetensors;
# diffusers-style ones diffusion_pytorch_model.*.
WEIGHTS_NAMES = ("pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.safetensors",
                 "pytorch_model.bin", "model.bin", "diffusion_pytorch_model.bin")


@dataclass
class VQGANConfig:
    """Fields and defaults as open-MUSE's `VQGANModel.__init__`; `lvm()` gives LVM's values."""

    resolution: int = 256
    num_channels: int = 3
    hidden_channels: int = 128
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    decoder_res_blocks: int | list[int] | None = None
    extra_mid_res_blocks: int | None = None
    decoder_hidden_channels: int | None = None
    decoder_channel_mult: list[int] | None = None
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    no_attn_mid_block: bool = False
    z_channels: int = 256
    num_embeddings: int = 1024
    quantized_embed_dim: int = 256
    dropout: float = 0.0
    resample_with_conv: bool = True
    commitment_cost: float = 0.25

    @classmethod
    def lvm(cls) -> "VQGANConfig":
        """The configuration of the tokenizer LVM released (146.2M parameters)."""
        return cls(resolution=256, hidden_channels=128, channel_mult=[1, 2, 2, 4, 6], num_res_blocks=2,
                   attn_resolutions=[], no_attn_mid_block=True, z_channels=64, quantized_embed_dim=64,
                   num_embeddings=8192, dropout=0.0, resample_with_conv=True)

    @classmethod
    def tiny(cls) -> "VQGANConfig":
        """Small enough to train on two CPU cores in a minute or two; still 16× down, 256 tokens at 256 px."""
        return cls(resolution=256, hidden_channels=32, channel_mult=[1, 1, 1, 2, 2], num_res_blocks=1,
                   attn_resolutions=[], no_attn_mid_block=True, z_channels=32, quantized_embed_dim=16,
                   num_embeddings=512, dropout=0.0, resample_with_conv=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VQGANConfig":
        """From a config.json; diffusers-style bookkeeping keys (`_class_name`, …) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
        if unknown:
            raise ValueError(f"config: unknown VQGAN config keys {unknown}")
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """open-MUSE's config.json. The decoder keys of its `vqgan-finetuning` branch appear only when
        set: open-MUSE's main branch has no such arguments (nor the weights they add)."""
        d = dataclasses.asdict(self)
        for k in EXTENSION_KEYS:
            if d[k] is None:
                del d[k]
        return {"_class_name": "VQGANModel", **d}

    @property
    def num_resolutions(self) -> int:
        return len(self.channel_mult)

    @property
    def reduction_factor(self) -> int:
        return 2 ** (self.num_resolutions - 1)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.reduction_factor

    @property
    def tokens_per_image(self) -> int:
        return self.latent_size ** 2

    def validate(self) -> None:
        """Refuse configs the network cannot be built from, with the reason (GroupNorm needs 32 | channels)."""
        dec_h = self.decoder_hidden_channels or self.hidden_channels
        dec_m = self.decoder_channel_mult or self.channel_mult
        widths = [self.hidden_channels * m for m in self.channel_mult] + [dec_h * m for m in dec_m]
        bad = sorted({w for w in widths if w % 32})
        if bad:
            raise ValueError(f"config: channel widths {bad} are not multiples of 32 (GroupNorm uses 32 groups)")
        if self.resolution % self.reduction_factor:
            raise ValueError(f"config: resolution {self.resolution} not divisible by {self.reduction_factor}")
        if self.num_embeddings > 65536:
            raise ValueError("config: num_embeddings > 65536 does not fit the uint16 token column")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    def __init__(self, in_channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
    def __init__(self, in_channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            # Asymmetric padding (right/bottom only), as taming/open-MUSE: symmetric padding shifts the grid.
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int | None = None, use_conv_shortcut: bool = False,
                 dropout_prob: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels_ = in_channels if out_channels is None else out_channels
        self.use_conv_shortcut = use_conv_shortcut
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, self.out_channels_, kernel_size=3, stride=1, padding=1)
        self.norm2 = _norm(self.out_channels_)
        self.dropout = nn.Dropout(dropout_prob)
        self.conv2 = nn.Conv2d(self.out_channels_, self.out_channels_, kernel_size=3, stride=1, padding=1)
        if in_channels != self.out_channels_:
            if use_conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, self.out_channels_, kernel_size=3, stride=1, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, self.out_channels_, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels_:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.norm = _norm(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww).transpose(1, 2)
        v = self.v(h).reshape(b, c, hh * ww).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # same math as open-MUSE's bmm/softmax, fused
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))


def _apply_blocks(blocks: nn.ModuleList, attn: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(blocks):
        x = block(x)
        # open-MUSE applies attention only when a level has more than one attention block; mirrored so
        # that a checkpoint trained there computes the same function here.
        if len(attn) > 1:
            x = attn[i](x)
    return x


class DownsamplingBlock(nn.Module):
    def __init__(self, config: VQGANConfig, curr_res: int, block_idx: int) -> None:
        super().__init__()
        in_mult = (1,) + tuple(config.channel_mult)
        block_in = config.hidden_channels * in_mult[block_idx]
        block_out = config.hidden_channels * config.channel_mult[block_idx]
        self.block, self.attn = nn.ModuleList(), nn.ModuleList()
        for _ in range(config.num_res_blocks):
            self.block.append(ResnetBlock(block_in, block_out, dropout_prob=config.dropout))
            block_in = block_out
            if curr_res in config.attn_resolutions:
                self.attn.append(AttnBlock(block_in))
        self.downsample = None
        if block_idx != config.num_resolutions - 1:
            self.downsample = Downsample(block_in, config.resample_with_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _apply_blocks(self.block, self.attn, x)
        return self.downsample(x) if self.downsample is not None else x


class UpsamplingBlock(nn.Module):
    def __init__(self, config: VQGANConfig, num_res_blocks: int, curr_res: int, block_idx: int) -> None:
        super().__init__()
        hidden = config.decoder_hidden_channels or config.hidden_channels
        mult = config.decoder_channel_mult or config.channel_mult
        block_in = hidden * (mult[-1] if block_idx == config.num_resolutions - 1 else mult[block_idx + 1])
        block_out = hidden * mult[block_idx]
        self.block, self.attn = nn.ModuleList(), nn.ModuleList()
        for _ in range(num_res_blocks + 1):
            self.block.append(ResnetBlock(block_in, block_out, dropout_prob=config.dropout))
            block_in = block_out
            if curr_res in config.attn_resolutions:
                self.attn.append(AttnBlock(block_in))
        self.upsample = Upsample(block_in, config.resample_with_conv) if block_idx != 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _apply_blocks(self.block, self.attn, x)
        return self.upsample(x) if self.upsample is not None else x


class MidBlock(nn.Module):
    def __init__(self, config: VQGANConfig, in_channels: int, no_attn: bool, dropout: float,
                 is_decoder: bool = False) -> None:
        super().__init__()
        self.no_attn = no_attn
        self.block_1 = ResnetBlock(in_channels, in_channels, dropout_prob=dropout)
        if not no_attn:
            self.attn_1 = AttnBlock(in_channels)
        self.block_2 = ResnetBlock(in_channels, in_channels, dropout_prob=dropout)
        if config.extra_mid_res_blocks is not None and is_decoder:
            self.extra_mid_res_blocks = nn.ModuleList(
                ResnetBlock(in_channels, dropout_prob=dropout) for _ in range(config.extra_mid_res_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)
        if not self.no_attn:
            x = self.attn_1(x)
        x = self.block_2(x)
        for block in getattr(self, "extra_mid_res_blocks", ()):
            x = block(x)
        return x


class Encoder(nn.Module):
    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(config.num_channels, config.hidden_channels, kernel_size=3, stride=1, padding=1)
        curr_res, down = config.resolution, []
        for i_level in range(config.num_resolutions):
            down.append(DownsamplingBlock(config, curr_res, block_idx=i_level))
            if i_level != config.num_resolutions - 1:
                curr_res //= 2
        self.down = nn.ModuleList(down)
        mid_channels = config.hidden_channels * config.channel_mult[-1]
        self.mid = MidBlock(config, mid_channels, config.no_attn_mid_block, config.dropout)
        self.norm_out = _norm(mid_channels)
        self.conv_out = nn.Conv2d(mid_channels, config.z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down:
            x = block(x)
        x = self.mid(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        hidden = config.decoder_hidden_channels or config.hidden_channels
        mult = config.decoder_channel_mult or config.channel_mult
        block_in = hidden * mult[config.num_resolutions - 1]
        curr_res = config.resolution // 2 ** (config.num_resolutions - 1)
        res_blocks = config.num_res_blocks if config.decoder_res_blocks is None else config.decoder_res_blocks
        if isinstance(res_blocks, int):
            res_blocks = [res_blocks] * config.num_resolutions
        self.conv_in = nn.Conv2d(config.z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = MidBlock(config, block_in, config.no_attn_mid_block, config.dropout, is_decoder=True)
        up = []
        for i_level in reversed(range(config.num_resolutions)):
            up.append(UpsamplingBlock(config, res_blocks[i_level], curr_res, block_idx=i_level))
            if i_level != 0:
                curr_res *= 2
        self.up = nn.ModuleList(list(reversed(up)))  # index = resolution level, as in the checkpoint
        block_out = hidden * mult[0]
        self.norm_out = _norm(block_out)
        self.conv_out = nn.Conv2d(block_out, config.num_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(x))
        for block in reversed(self.up):
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class VectorQuantizer(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, commitment_cost: float) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.commitment_cost = num_embeddings, embedding_dim, commitment_cost
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.embedding.weight.data.uniform_(-1.0 / num_embeddings, 1.0 / num_embeddings)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B,C,H,W] → (straight-through quantized z, indices [B, H*W], codebook + commitment loss)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        idx = nearest_codes(flat, self.embedding.weight)
        zq = self.embedding(idx)
        loss = F.mse_loss(zq, flat.detach()) + self.commitment_cost * F.mse_loss(flat, zq.detach())
        zq = flat + (zq - flat).detach()
        return zq.reshape(b, h, w, c).permute(0, 3, 1, 2), idx.reshape(b, h * w), loss

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        b, n = indices.shape
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"codes: {n} tokens per image is not a square grid")
        return self.embedding(indices).reshape(b, side, side, -1).permute(0, 3, 1, 2)


class VQGAN(nn.Module):
    """open-MUSE `VQGANModel` (same state-dict names); numpy in/out lives in tokenize_job.encode."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config.num_embeddings, config.quantized_embed_dim, config.commitment_cost)
        self.quant_conv = nn.Conv2d(config.z_channels, config.quantized_embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(config.quantized_embed_dim, config.z_channels, kernel_size=1)
        self.weights_sha256: str | None = None  # set when loaded from / saved to a directory
        self.name: str = "vqgan"

    # --- the open-MUSE methods (tensors in [0,1], NCHW) ---
    def encode_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(pixels))

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quantized))

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quantize.get_codebook_entry(indices))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pixels [B,3,H,W] in [0,1] → (reconstruction, indices [B, L], codebook + commitment loss)."""
        zq, idx, loss = self.quantize(self.encode_latent(pixels))
        return self.decode(zq), idx, loss

    @property
    def device(self) -> torch.device:
        return self.quantize.embedding.weight.device

    @property
    def tokenizer_id(self) -> str:
        """`<name>-<weights sha256 prefix>`: names the directory of token shards it made."""
        return f"{self.name}-{(self.weights_sha256 or 'unsaved')[:12]}"

    def describe(self) -> dict[str, Any]:
        """What token-shard metadata says about the tokenizer that made them."""
        return {"tokenizer_id": self.tokenizer_id, "config": self.config.to_dict(),
                "weights_sha256": self.weights_sha256, "codebook_size": self.config.num_embeddings,
                "tokens_per_image": self.config.tokens_per_image, "resolution": self.config.resolution}

    def save_pretrained(self, directory: str | Path, name: str | None = None) -> Path:
        """config.json + pytorch_model.bin, as open-MUSE's `VQGANModel.save_pretrained` writes them, so
        its `from_pretrained` (which reads pytorch_model.bin only) loads what UVD trains.

        The state dict holds plain tensors only (loads with `weights_only=True`). Weights files that
        `load_tokenizer` would pick before this one are removed, so the folder names one model.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if name:
            self.name = name
        cfg = {**self.config.to_dict(), "_uvd_name": self.name}
        (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        tmp = directory / (SAVE_NAME + ".tmp")
        torch.save(state, tmp)
        tmp.replace(directory / SAVE_NAME)
        for stale in WEIGHTS_NAMES[:WEIGHTS_NAMES.index(SAVE_NAME)]:
            (directory / stale).unlink(missing_ok=True)
        self.weights_sha256 = sha256_of(str(directory / SAVE_NAME))[0]
        return directory


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_file(directory: str | Path) -> Path:
    directory = Path(directory)
    for name in WEIGHTS_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"tokenizer: no weights file in {directory} (looked for {', '.join(WEIGHTS_NAMES)})")


def load_state_strict(model: VQGAN, state: dict[str, torch.Tensor], source: str | Path | None = None) -> None:
    """Load with every name and shape checked, and say exactly what differs (and from which file)."""
    where = f" {source}" if source else ""
    c = model.config
    summary = (f"hidden_channels {c.hidden_channels}, channel_mult {c.channel_mult}, z_channels {c.z_channels}, "
               f"num_embeddings {c.num_embeddings}, quantized_embed_dim {c.quantized_embed_dim}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' …' if len(missing) > 8 else ''} ({len(missing)})")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' …' if len(unexpected) > 8 else ''} ({len(unexpected)})")
    if shapes:
        problems.append(f"shape mismatch {shapes[:8]} ({len(shapes)})")
    if problems:
        raise ValueError(f"checkpoint{where}: does not match the config ({summary}): " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VQGAN:
    """A VQGAN from a local directory: config.json plus one weights file (WEIGHTS_NAMES, safetensors first)."""
    directory = Path(path)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"tokenizer: no {CONFIG_NAME} in {directory}")
    raw = json.loads((directory / CONFIG_NAME).read_text())
    config = VQGANConfig.from_dict(raw)
    wfile = weights_file(directory)
    model = VQGAN(config)
    load_state_strict(model, read_state_dict(wfile), wfile)
    model.weights_sha256 = sha256_of(str(wfile))[0]
    model.name = str(raw.get("_uvd_name") or directory.name or "vqgan")
    return model.to(device).eval()
