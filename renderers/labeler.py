"""Pseudo-labelling with a local expert model, as LVM labelled unannotated photos.

A `Labeler` wraps a torch module that maps a photo to one dense or sparse annotation:

- `depth`        (N, 1, H, W) or (N, H, W): depth, or disparity (the caller inverts it: the
  `pseudo_label` task's and `uvd pseudo-label`'s `inverse_output`);
- `normals`      (N, 3, H, W): normals in the viewer's frame (x right, y up, z to the camera);
- `segmentation` (N, C, H, W) class scores (argmax taken) or (N, H, W) integer class ids;
- `edges`        (N, 1, H, W) or (N, H, W): edge probability in [0, 1] (HED/PiDiNet-style);
- `keypoints`    (N, K, H, W) heatmaps (peak per channel) or (N, K, 2|3) x, y[, score] in
  input pixels.

Weights are only ever read from a local path, never downloaded:
- an exported program (`torch.export.save`, suffix `.pt2`), loaded with `torch.export.load`;
- a TorchScript archive (`torch.jit.save`), loaded with `torch.jit.load`; or
- a state dict (`.pt`/`.pth` via `torch.load(weights_only=True)`, or `.safetensors`) plus
  the name of an architecture: one registered here with `register_architecture`, or a
  dotted "module:factory".

The input is the normalised RGB photo as float in [0, 1], then (x − mean) / std per channel.
"""
from __future__ import annotations

import functools
import importlib
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from uvd.errors import ConfigError

Kind = Literal["depth", "normals", "segmentation", "keypoints", "edges"]
KINDS: tuple[str, ...] = ("depth", "normals", "segmentation", "keypoints", "edges")

ARCHITECTURES: dict[str, Callable[..., Any]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make a module factory loadable by name from a state dict."""
    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        ARCHITECTURES[name] = factory
        return factory
    return deco


@register_architecture("conv_head")
def conv_head(out_channels: int, hidden: int = 16, layers: int = 2) -> Any:
    """A small fully-convolutional net (3×3 convs + ReLU, 1×1 head): a template and a test fixture."""
    import torch.nn as nn

    mods: list[Any] = []
    c = 3
    for _ in range(layers):
        mods += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU()]
        c = hidden
    mods.append(nn.Conv2d(c, out_channels, 1))
    return nn.Sequential(*mods)


def _factory(arch: str) -> Callable[..., Any]:
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if ":" in arch:
        module, _, attr = arch.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"labeler: cannot import architecture {arch!r} ({err})") from None
    raise ConfigError(f"labeler: unknown architecture {arch!r}; registered: {', '.join(sorted(ARCHITECTURES))}")


def _is_torchscript(path: Path) -> bool:
    # torch.jit.save writes a zip holding code/ and constants.pkl; torch.save writes a zip without code/.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("constants.pkl") for n in z.namelist())


def _state_dict(path: Path) -> dict[str, Any]:
    from uvd.weights import read_state_dict

    try:
        return read_state_dict(path)
    except ValueError as err:
        raise ConfigError(f"labeler: {err}") from None


class Labeler:
    """A loaded expert model for one kind of annotation; call it on H×W×3 uint8 photos."""

    def __init__(self, module: Any, kind: str, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), device: str = "cpu") -> None:
        if kind not in KINDS:
            raise ConfigError(f"labeler: unknown kind {kind!r}; one of {', '.join(KINDS)}")
        import torch

        self.module = module.to(device)
        try:
            self.module.eval()
        except (NotImplementedError, RuntimeError):  # exported programs have no train/eval modes
            pass
        self.kind = kind
        self.device = device
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def load(cls, path: str, kind: str, arch: str | None = None, arch_args: dict[str, Any] | None = None,
             **kwargs: Any) -> "Labeler":
        import torch

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"labeler: model file does not exist: {path}")
        if arch is None and p.suffix == ".pt2":
            try:
                module = torch.export.load(str(p)).module()
            except Exception as err:
                raise ConfigError(f"labeler: {path} is not a loadable exported program ({type(err).__name__}: {err})") from None
        elif arch is None:
            if not _is_torchscript(p):
                raise ConfigError(f"labeler: {path} is not a TorchScript archive nor a .pt2 exported program; to load a state dict, "
                                  f"name its architecture (arch: one of {', '.join(sorted(ARCHITECTURES))} or module:factory)")
            module = torch.jit.load(str(p), map_location="cpu")
        else:
            module = _factory(arch)(**(arch_args or {}))
            try:
                module.load_state_dict(_state_dict(p), strict=True)
            except RuntimeError as err:
                raise ConfigError(f"labeler: {path} does not fit architecture {arch!r}: {err}") from None
        return cls(module, kind, **kwargs)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.predict([rgb])[0]

    def predict(self, photos: list[np.ndarray]) -> list[np.ndarray]:
        """Photos (same size) → per photo: depth H×W float32, normals H×W×3 float32,
        segmentation H×W int32, keypoints K×3 float32 (x, y, score) in input pixels."""
        import torch
        import torch.nn.functional as F

        h, w = photos[0].shape[:2]
        x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self.mean) / self.std).to(self.device)
        with torch.inference_mode():
            y = self.module(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        if isinstance(y, dict):
            y = next(iter(y.values()))
        y = y.detach().float().cpu()
        n = len(photos)
        if self.kind == "keypoints":
            return list(self._keypoints(y, n, h, w))
        if y.ndim == 3 and self.kind in ("depth", "segmentation", "edges"):
            y = y.unsqueeze(1)
        if y.ndim != 4 or y.shape[0] != n:
            raise ValueError(f"labeler ({self.kind}): expected a (N, C, H, W) output, got {tuple(y.shape)}")
        if self.kind == "segmentation" and y.shape[1] == 1:
            ids = F.interpolate(y, size=(h, w), mode="nearest")[:, 0]
            return [a.numpy().astype(np.int32) for a in ids]
        if y.shape[-2:] != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        if self.kind in ("depth", "edges"):
            if y.shape[1] != 1:
                raise ValueError(f"labeler ({self.kind}): expected 1 channel, got {y.shape[1]}")
            return [a[0].numpy().astype(np.float32) for a in y]
        if self.kind == "normals":
            if y.shape[1] != 3:
                raise ValueError(f"labeler (normals): expected 3 channels, got {y.shape[1]}")
            y = F.normalize(y, dim=1)
            return [a.permute(1, 2, 0).numpy().astype(np.float32) for a in y]
        return [a.numpy().astype(np.int32) for a in y.argmax(dim=1)]

    @staticmethod
    def _keypoints(y: Any, n: int, h: int, w: int) -> Any:
        if y.ndim == 3 and y.shape[-1] in (2, 3):
            for a in y.numpy():
                score = a[:, 2] if a.shape[1] == 3 else np.ones(len(a), np.float32)
                yield np.stack([a[:, 0], a[:, 1], score], axis=1).astype(np.float32)
            return
        if y.ndim != 4:
            raise ValueError(f"labeler (keypoints): expected heatmaps (N, K, H, W) or coordinates (N, K, 2|3), got {tuple(y.shape)}")
        _, k, hh, ww = y.shape
        flat = y.reshape(n, k, -1)
        score, idx = flat.max(dim=-1)
        ys, xs = (idx // ww).float(), (idx % ww).float()
        # heatmap cell centres → input pixel coordinates
        xs = (xs + 0.5) * (w / ww) - 0.5
        ys = (ys + 0.5) * (h / hh) - 0.5
        for i in range(n):
            yield np.stack([xs[i].numpy(), ys[i].numpy(), score[i].numpy()], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _cached(path: str, kind: str, arch: str | None, arch_args: str, options: str) -> Labeler:
    return Labeler.load(path, kind, arch, json.loads(arch_args), **json.loads(options))


def load_labeler(path: str, kind: str, arch: str | None = None, arch_args: dict[str, Any] | None = None,
                 **options: Any) -> Labeler:
    """`Labeler.load`, kept per process: a worker loads each model once for all its items."""
    return _cached(str(path), kind, arch, json.dumps(arch_args or {}, sort_keys=True), json.dumps(options, sort_keys=True))


def resize_prediction(pred: np.ndarray, kind: str, width: int, height: int) -> np.ndarray:
    import cv2

    if pred.shape[:2] == (height, width):
        return pred
    if kind == "segmentation":
        return cv2.resize(pred.astype(np.int32 if pred.max() > 65535 else np.uint16), (width, height),
                          interpolation=cv2.INTER_NEAREST).astype(np.int32)
    return cv2.resize(pred, (width, height), interpolation=cv2.INTER_LINEAR)
