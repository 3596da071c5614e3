"""Tokenizer folders as open-MUSE, LVM, transformers and diffusers name their weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tokenize_job.vqgan import VQGAN, WEIGHTS_NAMES, VQGANConfig, load_tokenizer, weights_file

torch.set_num_threads(1)


def tiny() -> VQGANConfig:
    return VQGANConfig(resolution=32, hidden_channels=32, channel_mult=[1, 1], num_res_blocks=1,
                       attn_resolutions=[], no_attn_mid_block=True, z_channels=32, quantized_embed_dim=8,
                       num_embeddings=16)


def _folder(path: Path, model: VQGAN, name: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.config.to_dict()))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if name.endswith(".safetensors"):
        save_file(state, str(path / name))
    else:
        torch.save(state, path / name)
    return path


@pytest.mark.parametrize("name", WEIGHTS_NAMES)
def test_every_known_weights_name_loads(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = VQGAN(tiny())
    loaded = load_tokenizer(_folder(tmp_path / "tok", model, name))
    assert torch.equal(loaded.quantize.embedding.weight, model.quantize.embedding.weight)
    assert weights_file(tmp_path / "tok").name == name


def test_open_muse_safetensors_name_is_taken_before_a_pickle(tmp_path: Path) -> None:
    torch.manual_seed(0)
    good, other = VQGAN(tiny()), VQGAN(tiny())
    folder = _folder(tmp_path / "tok", good, "pytorch_model.safetensors")
    torch.save(other.state_dict(), folder / "pytorch_model.bin")
    assert weights_file(folder).name == "pytorch_model.safetensors"
    assert torch.equal(load_tokenizer(folder).quantize.embedding.weight, good.quantize.embedding.weight)


def test_config_that_does_not_match_the_weights_names_both(tmp_path: Path) -> None:
    model = VQGAN(tiny())
    folder = _folder(tmp_path / "tok", model, "pytorch_model.safetensors")
    wrong = {**model.config.to_dict(), "num_embeddings": 32}
    (folder / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"pytorch_model.safetensors: does not match the config \(.*num_embeddings 32.*"
                                         r"shape mismatch.*quantize.embedding.weight: checkpoint \(16, 8\) vs model \(32, 8\)"):
        load_tokenizer(folder)


def test_folder_without_weights_lists_the_names_it_tried(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(VQGAN(tiny()).config.to_dict()))
    with pytest.raises(FileNotFoundError, match="pytorch_model.safetensors, model.safetensors"):
        load_tokenizer(tmp_path)


def test_a_truncated_safetensors_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "tok", VQGAN(tiny()), "model.safetensors")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        load_tokenizer(folder)
