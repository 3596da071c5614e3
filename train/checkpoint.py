"""Checkpoints: one file per save, written under a temporary name then renamed, plus a `latest` pointer.

A checkpoint holds the full (unsharded) model and optimizer state, the schedule's step, every
rank's data-stream position and RNG state, and the config that made it, so `generate` needs
nothing else and a resumed run continues exactly.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from uvd import storage

LATEST = "latest"


def checkpoint_dir(out: str) -> str:
    return storage.join(out, "checkpoints")


def checkpoint_url(out: str, step: int) -> str:
    return storage.join(checkpoint_dir(out), f"step-{step:08d}.pt")


def plain(obj: Any) -> Any:
    """Arrays and tensors → lists: for the data-stream state, so that it passes all_gather_object
    and a checkpoint loads with torch.load(weights_only=True). Not for weights."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def save(out: str, step: int, state: dict[str, Any], keep: int) -> str:
    url = checkpoint_url(out, step)
    buf = io.BytesIO()
    torch.save(state, buf)
    storage.write_bytes(url, buf.getvalue())
    # The pointer moves only once the checkpoint is complete under its name.
    storage.write_bytes(storage.join(checkpoint_dir(out), LATEST), f"step-{step:08d}.pt\n".encode())
    _prune(out, keep)
    return url


def _prune(out: str, keep: int) -> None:
    found = storage.glob(checkpoint_dir(out), "step-*.pt")
    fs, _ = storage.fs_and_path(checkpoint_dir(out))
    for old in found[:-keep]:
        fs.rm(old)


def latest(out: str) -> str | None:
    """The newest complete checkpoint of a run folder, or None."""
    pointer = storage.join(checkpoint_dir(out), LATEST)
    if not storage.exists(pointer):
        return None
    fs, path = storage.fs_and_path(pointer)
    with fs.open(path, "rb") as f:
        name = f.read().decode().strip()
    url = storage.join(checkpoint_dir(out), name)
    return url if storage.exists(url) else None


def load(url: str, map_location: str = "cpu") -> dict[str, Any]:
    """A checkpoint file, or the latest checkpoint of a run folder."""
    if not url.endswith(".pt"):
        found = latest(url)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {url}")
        url = found
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        data = f.read()
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
