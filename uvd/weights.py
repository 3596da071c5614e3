"""Reading a model's weights file without executing pickled code.

safetensors, or `torch.load(weights_only=True)` for .bin/.pt files; a checkpoint that wraps its
tensors as {"state_dict": {...}} (Lightning, taming) is unwrapped. Used by every loader of
pretrained weights (tokenizer, labelers), so that each refuses bad files the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors of one weights file by name; ValueError (with the file named) when it holds none."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own SafetensorError
            raise ValueError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, refused globals: all "not a state dict"
        raise ValueError(f"{path}: not a loadable state dict ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
