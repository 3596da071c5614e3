"""Our model ↔ a Hugging Face `LlamaForCausalLM` folder (config.json, safetensors, generation_config.json).

The parameter names are already Hugging Face's (model.layers.N.self_attn.q_proj.weight, …) and
the rotary embedding uses its layout (rotate_half), so weights map over unchanged in both
directions; only the config is translated. Everything is built locally: nothing is downloaded,
and `transformers` is not needed to write or read a folder (it is a test dependency, to check
that it loads what we write).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from train.config import CODEBOOK_SIZE, ModelConfig
from train.model import ModelArgs, Transformer
from uvd.weights import read_state_dict

SAFE_NAME = "model.safetensors"
# A sharded folder lists its files in an index; transformers writes .bin shards with the second
# (older releases, and EasyLM's LLaMA → HF conversion that LVM's checkpoints went through).
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def hf_config(m: ModelConfig, eos_id: int, pad_id: int, dtype: str = "float32") -> dict[str, Any]:
    """A LlamaConfig as config.json, plus our codebook size under "uvd" (ignored by transformers)."""
    dim, heads = m.resolved("dim"), m.resolved("n_heads")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": dim, "intermediate_size": m.resolved("mlp_dim"), "num_hidden_layers": m.resolved("n_layers"),
        "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": dim // heads,
        "vocab_size": m.vocab_size, "max_position_embeddings": m.max_seq_len,
        "rms_norm_eps": m.norm_eps, "hidden_act": "silu", "initializer_range": m.init_std,
        # transformers ≥ 5 reads rope_parameters; older releases rope_theta: both, the same θ.
        "rope_theta": m.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "bos_token_id": None, "eos_token_id": eos_id, "pad_token_id": pad_id,
        "torch_dtype": dtype, "use_cache": True,
        "uvd": {"codebook_size": m.codebook_size},
    }


def save_hf(model: Transformer, m: ModelConfig, out_dir: str | Path, eos_id: int, pad_id: int,
            dtype: torch.dtype = torch.float32) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = str(dtype).removeprefix("torch.")
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = out / (SAFE_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / SAFE_NAME)
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": None, "eos_token_id": eos_id, "pad_token_id": pad_id, "do_sample": True,
         "top_k": 100, "temperature": 1.0}, indent=2) + "\n")
    # config.json last: a folder without it is not a model folder, so a crash leaves none half-made.
    (out / "config.json").write_text(json.dumps(hf_config(m, eos_id, pad_id, name), indent=2) + "\n")
    return out


def is_hf_folder(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "llama"
    except ValueError:
        return False


def model_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """Refuse what our model cannot represent, with the reason; else the equivalent ModelConfig."""
    problems = []
    if hf.get("model_type") != "llama":
        problems.append(f"model_type {hf.get('model_type')!r} (need 'llama')")
    heads = int(hf["num_attention_heads"])
    if int(hf.get("num_key_value_heads") or heads) != heads:
        problems.append(f"grouped-query attention (num_key_value_heads {hf['num_key_value_heads']} ≠ {heads})")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {hf['hidden_act']!r}")
    if hf.get("tie_word_embeddings"):
        problems.append("tied embeddings")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        problems.append("biases")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        problems.append(f"rope scaling {rope}")
    dim = int(hf["hidden_size"])
    if int(hf.get("head_dim") or dim // heads) != dim // heads:
        problems.append(f"head_dim {hf['head_dim']} ≠ hidden_size / heads")
    if problems:
        raise ValueError("config.json: not a model this trainer can run: " + "; ".join(problems))
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
    return ModelConfig(size="custom", dim=dim, mlp_dim=int(hf["intermediate_size"]),
                       n_layers=int(hf["num_hidden_layers"]), n_heads=heads, vocab_size=int(hf["vocab_size"]),
                       codebook_size=int((hf.get("uvd") or {}).get("codebook_size", CODEBOOK_SIZE)),
                       max_seq_len=int(hf.get("max_position_embeddings", 4096)), rope_theta=theta,
                       norm_eps=float(hf.get("rms_norm_eps", 1e-6)), init_std=float(hf.get("initializer_range", 0.02)))


def _hf_state(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the folder: one file or an index of shards; safetensors first, .bin without pickle."""
    if (folder / SAFE_NAME).is_file():
        return read_state_dict(folder / SAFE_NAME)
    for index in INDEXES:
        if (folder / index).is_file():
            files = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for f in files:
                state.update(read_state_dict(folder / f))
            return state
    if (folder / "pytorch_model.bin").is_file():
        return read_state_dict(folder / "pytorch_model.bin")
    raise FileNotFoundError(f"{folder}: no {SAFE_NAME}, {' or '.join(INDEXES)} or pytorch_model.bin")


def load_hf(folder: str | Path) -> tuple[Transformer, ModelConfig]:
    """Our Transformer with a LlamaForCausalLM folder's weights, loaded strictly (fp32)."""
    folder = Path(folder)
    m = model_config_from_hf(json.loads((folder / "config.json").read_text()))
    model = Transformer(ModelArgs.from_config(m))
    state = {k: v for k, v in _hf_state(folder).items() if not k.endswith("rotary_emb.inv_freq")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match config.json: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model, m
