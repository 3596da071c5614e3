"""The LLaMA-style model: sizes, rotary layout, causality, the sampling cache."""
from __future__ import annotations

import pytest
import torch

from train.config import MODEL_SIZES, ModelConfig
from train.model import KVCache, ModelArgs, Transformer, apply_rotary, count_params, rotary_tables


@pytest.mark.parametrize("size,low,high", [("300m", 0.28e9, 0.32e9), ("600m", 0.6e9, 0.7e9), ("1b", 1.0e9, 1.3e9),
                                           ("3b", 3.2e9, 3.6e9), ("7b", 6.4e9, 6.7e9)])
def test_lvm_sizes_have_their_parameter_counts(size: str, low: float, high: float) -> None:
    args = ModelArgs.from_config(ModelConfig(size=size))
    assert (args.dim, args.mlp_dim, args.n_layers, args.n_heads) == tuple(MODEL_SIZES[size].values())
    assert args.vocab_size == 8292
    assert low < count_params(args) < high


def test_count_params_matches_the_module() -> None:
    model = Transformer(ModelArgs.from_config(ModelConfig(size="tiny", max_seq_len=64)))
    assert model.num_params() == count_params(model.args)
    # Untied: the output head is its own matrix.
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_rotary_is_hugging_face_layout_and_relative() -> None:
    head_dim = 8
    cos, sin = rotary_tables(head_dim, 32, 10000.0)
    # HF layout: dimension i and i + head_dim/2 share one angle.
    assert torch.equal(cos[:, :4], cos[:, 4:])
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(pq: int, pk: int) -> float:
        rq = apply_rotary(q.view(1, 1, 1, -1), cos[pq:pq + 1], sin[pq:pq + 1]).flatten()
        rk = apply_rotary(k.view(1, 1, 1, -1), cos[pk:pk + 1], sin[pk:pk + 1]).flatten()
        return float(rq @ rk)

    assert score(5, 2) == pytest.approx(score(20, 17), rel=1e-5)  # only the distance matters
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)


def test_causal_and_cache_agree_with_full_forward() -> None:
    torch.manual_seed(0)
    model = Transformer(ModelArgs.from_config(ModelConfig(size="tiny", max_seq_len=64))).eval()
    x = torch.randint(0, 8192, (1, 12))
    with torch.no_grad():
        full = model(x)
        changed = x.clone()
        changed[0, 8] = (changed[0, 8] + 1) % 8192
        assert torch.allclose(model(changed)[:, :8], full[:, :8], atol=1e-5)  # the future is not seen
        assert not torch.allclose(model(changed)[:, 8:], full[:, 8:], atol=1e-3)
        cache = KVCache(model.args.n_layers)
        steps = [model(x[:, :5], cache)] + [model(x[:, i:i + 1], cache) for i in range(5, 12)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-4)


def test_custom_size_and_bad_dims_are_refused() -> None:
    assert ModelArgs.from_config(ModelConfig(size="custom", dim=96, mlp_dim=256, n_layers=1, n_heads=2)).head_dim == 48
    with pytest.raises(ValueError, match="needs dim"):
        ModelConfig(size="custom", mlp_dim=256, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        ModelConfig(size="tiny", dim=66)


def test_defaults_are_lvms_model() -> None:
    """LVM's vqlm_1b (ytongbai/LVM EasyLM/models/llama/llama_model.py): vocab 8292, hidden 2048, MLP 5504,
    22 layers, 16 heads, seq 4096, RMSNorm eps 1e-6, init N(0, 0.02) everywhere; rope θ 10000."""
    m = ModelConfig(size="1b")
    assert (m.vocab_size, m.max_seq_len, m.norm_eps, m.rope_theta, m.init_std) == (8292, 4096, 1e-6, 10000.0, 0.02)
    assert [m.resolved(k) for k in ("dim", "mlp_dim", "n_layers", "n_heads")] == [2048, 5504, 22, 16]
    torch.manual_seed(0)
    model = Transformer(ModelArgs.from_config(ModelConfig(size="custom", dim=256, mlp_dim=512, n_layers=8, n_heads=4)))
    for name in ("model.layers.7.self_attn.o_proj.weight", "model.layers.7.mlp.down_proj.weight",
                 "model.layers.0.self_attn.q_proj.weight", "lm_head.weight", "model.embed_tokens.weight"):
        std = dict(model.named_parameters())[name].std().item()
        assert abs(std - 0.02) < 0.002, (name, std)  # not rescaled by depth
    assert all(float(b.input_layernorm.eps) == 1e-6 for b in model.model.layers)
    scaled = Transformer(ModelArgs.from_config(ModelConfig(size="custom", dim=256, mlp_dim=512, n_layers=8, n_heads=4,
                                                           scaled_residual_init=True)))
    assert scaled.model.layers[0].mlp.down_proj.weight.std().item() < 0.006  # 0.02 / √16
