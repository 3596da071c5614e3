"""A LLaMA-style decoder over visual tokens, kept as plain as nanoGPT.

RMSNorm before attention and MLP, rotary position embeddings in the Hugging Face layout
(rotate_half over the two halves of each head, not interleaved pairs), SwiGLU MLP, untied
input embedding and output head, no biases. Attention is torch's scaled_dot_product_attention.
Parameter names follow the Hugging Face LlamaForCausalLM ones (model.layers.N.self_attn.q_proj…)
so that weights map over with no renaming.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.config import ModelConfig


@dataclass(frozen=True)
class ModelArgs:
    dim: int
    mlp_dim: int
    n_layers: int
    n_heads: int
    vocab_size: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    scaled_residual_init: bool = False

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "ModelArgs":
        return cls(dim=cfg.resolved("dim"), mlp_dim=cfg.resolved("mlp_dim"), n_layers=cfg.resolved("n_layers"),
                   n_heads=cfg.resolved("n_heads"), vocab_size=cfg.vocab_size, max_seq_len=cfg.max_seq_len,
                   rope_theta=cfg.rope_theta, norm_eps=cfg.norm_eps, init_std=cfg.init_std,
                   scaled_residual_init=cfg.scaled_residual_init)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def count_params(args: ModelArgs) -> int:
    """Parameters of a model of these dimensions, without building it (the 7B needs 27 GB in fp32)."""
    d, m = args.dim, args.mlp_dim
    per_layer = 4 * d * d + 3 * d * m + 2 * d
    return args.n_layers * per_layer + 2 * args.vocab_size * d + d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 (as LLaMA): bf16 variance loses too much precision.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


def rotary_tables(head_dim: int, length: int, theta: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)  # HF layout: the same angle for i and i + head_dim/2
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [batch, heads, time, head_dim]; cos/sin: [time, head_dim]
    return (x * cos + rotate_half(x) * sin).type_as(x)


class KVCache:
    """Keys and values of the tokens seen so far, for sampling one token at a time."""

    def __init__(self, n_layers: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, layer: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.layer = args.n_heads, args.head_dim, layer
        self.q_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.k_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.v_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.o_proj = nn.Linear(args.dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                past: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif t == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # one new query sees everything before it
        else:  # several new tokens after a cached prefix: causal over the new ones only
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(args.dim, args.mlp_dim, bias=False)
        self.up_proj = nn.Linear(args.dim, args.mlp_dim, bias=False)
        self.down_proj = nn.Linear(args.mlp_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, args: ModelArgs, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.self_attn = Attention(args, layer)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.mlp = MLP(args)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                past: int = 0) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, past)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args, i) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.model = Backbone(args)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)  # untied from embed_tokens
        cos, sin = rotary_tables(args.head_dim, args.max_seq_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)  # LVM/EasyLM: N(0, init_std) for every matrix, norm gains 1
        if args.scaled_residual_init:  # GPT-2: the projections into the residual stream, scaled by depth
            for name, p in self.named_parameters():
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    nn.init.normal_(p, mean=0.0, std=args.init_std / math.sqrt(2 * args.n_layers))

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.args.init_std)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits [batch, time, vocab] (fp32) for token ids [batch, time]."""
        t = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + t > self.args.max_seq_len:
            raise ValueError(f"sequence of {start + t} tokens > max_seq_len {self.args.max_seq_len}")
        cos, sin = self.rope_cos[start:start + t], self.rope_sin[start:start + t]
        x = self.model.embed_tokens(idx)
        for block in self.model.layers:
            x = block(x, cos, sin, cache, start)
        return self.lm_head(self.model.norm(x)).float()

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.model.embed_tokens.weight.numel()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6·N (N without the embedding lookup) + attention (PaLM, app. B)."""
        a = self.args
        return 6 * self.num_params(embeddings=False) + 12 * a.n_layers * a.dim * seq_len


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=ignore_id)
