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
- a Hugging Face `transformers` folder (depth estimation; semantic or universal segmentation),
  with its preprocessor_config.json's resize and normalisation (renderers/hf_experts.py);
- a ControlNet annotator's published edge weights, `ControlNetHED.pth` or `table5_pidinet.pth`,
  recognised from their keys (renderers/annotator_nets.py);
- an exported program (`torch.export.save`, suffix `.pt2`), loaded with `torch.export.load`;
- a TorchScript archive (`torch.jit.save`), loaded with `torch.jit.load`; or
- a state dict (`.pt`/`.pth` via `torch.load(weights_only=True)`, or `.safetensors`) plus
  the name of an architecture: one registered here with `register_architecture`, or a
  dotted "module:factory".

The input is the normalised RGB photo as float in [0, 1], then (x − mean) / std per channel,
at the size the model wants (`model_size`: a transformers folder's processor settings, an
annotator's 512-pixel short side, `input_size`, or as is); predictions come back at the photo's size.
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


def _raw_pth(path: Path) -> dict[str, Any]:
    """A published annotator file as torch.load gives it (PiDiNet nests its weights), tensors only."""
    import torch

    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"labeler: {path} is not a readable PyTorch weights file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"labeler: {path} holds a {type(raw).__name__}, not a state dict")
    return raw


def _annotator_in(path: Path) -> str | None:
    """The ControlNet annotator a .pth/.pt file holds, if it holds one (a TorchScript archive never does)."""
    if path.suffix not in (".pth", ".pt") or _is_torchscript(path):
        return None
    from renderers.annotator_nets import detect_annotator

    try:
        return detect_annotator(_raw_pth(path))
    except ConfigError:
        return None


class Labeler:
    """A loaded expert model for one kind of annotation; call it on H×W×3 uint8 photos."""

    def __init__(self, module: Any, kind: str, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), device: str = "cpu", input_size: int = 0,
                 preprocess: Any = None, disparity: bool = False, batch_size: int = 16) -> None:
        if kind not in KINDS:
            raise ConfigError(f"labeler: unknown kind {kind!r}; one of {', '.join(KINDS)}")
        import torch

        # `preprocess` (hf_experts.Preprocess) decides the model's input size; `input_size` is a short side
        self.preprocess = preprocess
        self.input_size = int(input_size or 0)
        self.disparity = bool(disparity)  # the model predicts disparity (DPT/MiDaS, relative Depth Anything)
        self.batch_size = max(1, int(batch_size))

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
        if p.is_dir():
            from renderers.hf_experts import load_hf_expert

            module, pre, disparity = load_hf_expert(str(p), kind)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("mean", "std", "input_size")}
            return cls(module, kind, mean=pre.mean, std=pre.std, preprocess=pre, disparity=disparity, **kwargs)
        if not p.is_file():
            raise ConfigError(f"labeler: model file does not exist: {path}")
        annotator = arch if arch in ("hed", "pidinet") else (_annotator_in(p) if arch is None else None)
        if annotator:
            from renderers.annotator_nets import build_annotator
            from renderers.hf_experts import Preprocess

            if kind != "edges":
                raise ConfigError(f"labeler: {path} is a {annotator} edge annotator; use kind edges, not {kind!r}")
            module = build_annotator(annotator, _raw_pth(p), str(p), arch_args)
            size = int(kwargs.pop("input_size", 0) or 512)  # controlnet_aux's detect_resolution
            kwargs = {k: v for k, v in kwargs.items() if k not in ("mean", "std")}
            # controlnet_aux's resize_image: short side to the resolution, both sides to multiples of 64
            pre = Preprocess({"size": {"shortest_edge": size}, "ensure_multiple_of": 64, "do_normalize": False})
            return cls(module, kind, preprocess=pre, **kwargs)
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
        return self.label([rgb])[0]

    def model_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) the model runs at for an h×w photo."""
        if self.preprocess is not None:
            return self.preprocess.model_size(h, w)
        if self.input_size:
            s = self.input_size / min(h, w)
            return max(1, round(h * s)), max(1, round(w * s))
        return h, w

    def label(self, photos: list[np.ndarray]) -> list[np.ndarray]:
        """Photos of any sizes → one prediction per photo at that photo's size. Photos are resized to
        the model's input size, batched by that size (`batch_size` at most) and the predictions
        resized back (nearest for class ids, bilinear otherwise)."""
        import cv2

        groups: dict[tuple[int, int], list[int]] = {}
        inputs: list[np.ndarray] = []
        for i, rgb in enumerate(photos):
            h, w = rgb.shape[:2]
            th, tw = self.model_size(h, w)
            if (th, tw) != (h, w):
                shrink = th * tw < h * w
                interp = cv2.INTER_AREA if shrink else (self.preprocess.interpolation if self.preprocess else cv2.INTER_LINEAR)
                rgb = cv2.resize(rgb, (tw, th), interpolation=interp)
            inputs.append(rgb)
            groups.setdefault((th, tw), []).append(i)
        out: list[Any] = [None] * len(photos)
        for idx in groups.values():
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k:k + self.batch_size]
                for i, pred in zip(chunk, self.predict([inputs[i] for i in chunk])):
                    h, w = photos[i].shape[:2]
                    out[i] = pred if self.kind == "keypoints" else resize_prediction(pred, self.kind, w, h)
                    if self.kind == "keypoints" and (h, w) != inputs[i].shape[:2]:
                        pred = pred.copy()  # coordinates back to the photo's pixels
                        pred[:, 0] = (pred[:, 0] + 0.5) * (w / inputs[i].shape[1]) - 0.5
                        pred[:, 1] = (pred[:, 1] + 0.5) * (h / inputs[i].shape[0]) - 0.5
                        out[i] = pred
        return out

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
