"""Hugging Face `transformers` expert folders (depth estimation, semantic and universal segmentation)
loaded from a local folder only, wrapped for the labeller.

A folder holds `config.json`, the weights (`model.safetensors`, `pytorch_model.bin` or a sharded
index) and `preprocessor_config.json` (what `save_pretrained` of a model and its image processor
write). The image processor itself is not used (some need torchvision, absent here); its settings
are read from the JSON and applied here as its `preprocess` does: resize (`size`: height/width,
or shortest_edge[/longest_edge]; `keep_aspect_ratio` + `ensure_multiple_of` as DPT and Depth
Anything do; `size_divisor` as Mask2Former does), rescale to [0, 1], normalise with
`image_mean`/`image_std`.

Outputs, in the labeller's contract:
- depth (`AutoModelForDepthEstimation`: DPT, Depth Anything, ...): `predicted_depth` (N, 1, h, w).
  DPT (MiDaS) and relative Depth Anything predict disparity; metric Depth Anything predicts depth
  (`predicts_disparity`).
- semantic segmentation (`AutoModelForSemanticSegmentation`: SegFormer, UperNet, DPT, ...):
  `logits` (N, C, h, w), argmax taken by the labeller.
- universal segmentation (`AutoModelForUniversalSegmentation`: Mask2Former, MaskFormer): per-class
  scores softmax(class logits)[..., :-1] × sigmoid(mask logits), summed over queries, as the
  processors' `post_process_semantic_segmentation`; argmax by the labeller. OneFormer needs
  its text task inputs (a CLIP tokenizer) and is refused.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from uvd.errors import ConfigError

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def is_hf_folder(path: str | Path) -> bool:
    return Path(path).is_dir()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"labeler: {path.parent}: cannot read {what} {path.name} ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"labeler: {path}: {what} is not a JSON object")
    return data


class Preprocess:
    """The image processor's resize and normalisation, from preprocessor_config.json."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        size = cfg.get("size", cfg.get("crop_size"))
        if isinstance(size, int):
            size = {"shortest_edge": size} if "size_divisor" in cfg else {"height": size, "width": size}
        self.size: dict[str, int] = dict(size or {})
        self.do_resize = bool(cfg.get("do_resize", True)) and bool(self.size)
        self.keep_aspect = bool(cfg.get("keep_aspect_ratio", False))
        self.multiple = int(cfg.get("ensure_multiple_of", 1) or 1)
        self.divisor = int(cfg.get("size_divisor", 0) or 0)
        self.resample = int(cfg.get("resample", 2))
        mean = list(cfg.get("image_mean", IMAGENET_MEAN)) if cfg.get("do_normalize", True) else [0.0] * 3
        std = list(cfg.get("image_std", IMAGENET_STD)) if cfg.get("do_normalize", True) else [1.0] * 3
        if max(mean) > 1.0:  # older MaskFormer-style configs give the statistics in 0..255
            mean, std = [m / 255 for m in mean], [s / 255 for s in std]
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def model_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) the model runs at for an h×w photo (transformers' resize rules)."""
        if not self.do_resize:
            th, tw = h, w
        elif "height" in self.size and "width" in self.size:
            sh, sw = self.size["height"] / h, self.size["width"] / w
            if self.keep_aspect:  # DPT: scale as little as possible
                if abs(1 - sw) < abs(1 - sh):
                    sh = sw
                else:
                    sw = sh
            th, tw = _multiple(sh * h, self.multiple), _multiple(sw * w, self.multiple)
        else:
            short = self.size.get("shortest_edge", min(h, w))
            s = short / min(h, w)
            if "longest_edge" in self.size and max(h, w) * s > self.size["longest_edge"]:
                s = self.size["longest_edge"] / max(h, w)
            th, tw = _multiple(h * s, self.multiple), _multiple(w * s, self.multiple)
        if self.divisor:  # Mask2Former pads to a multiple; resizing a few pixels more keeps the batch dense
            th, tw = (math.ceil(v / self.divisor) * self.divisor for v in (th, tw))
        return th, tw

    @property
    def interpolation(self) -> int:
        import cv2

        return {0: cv2.INTER_NEAREST, 1: cv2.INTER_LANCZOS4, 3: cv2.INTER_CUBIC}.get(self.resample, cv2.INTER_LINEAR)


def _multiple(v: float, m: int) -> int:
    x = int(round(v / m) * m)
    return max(m, x)


class DepthExpert(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).predicted_depth.unsqueeze(1)


class SemanticExpert(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


class UniversalExpert(nn.Module):
    """Mask2Former/MaskFormer → per-class scores (N, C, h, w) as post_process_semantic_segmentation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        classes = out.class_queries_logits.softmax(dim=-1)[..., :-1]  # the last class is "no object"
        masks = out.masks_queries_logits.sigmoid()
        masks = nn.functional.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.einsum("bqc,bqhw->bchw", classes, masks)


DEPTH_DISPARITY = {"dpt": True, "glpn": False, "zoedepth": False, "depth_pro": False}


def load_hf_expert(path: str, kind: str) -> tuple[nn.Module, Preprocess, bool]:
    """(module, preprocessing, predicts_disparity) of a local transformers folder; ConfigError names what is wrong."""
    root = Path(path)
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (root / n).is_file()]
    if not any((root / n).is_file() for n in WEIGHTS):
        missing.append(" or ".join(WEIGHTS[:2]))
    if missing:
        raise ConfigError(f"labeler: {path} is not a complete transformers model folder: missing {', '.join(missing)}")
    config = _read_json(root / "config.json", "model config")
    pre = Preprocess(_read_json(root / "preprocessor_config.json", "image-processor config"))
    model_type = str(config.get("model_type", ""))
    if model_type == "oneformer":
        raise ConfigError(f"labeler: {path}: OneFormer needs a text tokenizer for its task inputs and is not "
                          "supported; use a Mask2Former or SegFormer checkpoint")
    try:
        import transformers
    except ImportError:
        raise ConfigError("labeler: transformers folders need the `transformers` package (pip install "
                          "'uvd[test]' or transformers)") from None
    if kind == "depth":
        auto, wrap = transformers.AutoModelForDepthEstimation, DepthExpert
    elif kind == "segmentation":
        universal = model_type in ("mask2former", "maskformer")
        auto = (transformers.AutoModelForUniversalSegmentation if universal
                else transformers.AutoModelForSemanticSegmentation)
        wrap = UniversalExpert if universal else SemanticExpert
    else:
        raise ConfigError(f"labeler: {path}: transformers folders are supported for depth and segmentation, not {kind!r}")
    try:
        model, info = auto.from_pretrained(str(root), local_files_only=True, output_loading_info=True)
    except (ValueError, OSError, KeyError) as err:
        raise ConfigError(f"labeler: {path}: model type {model_type!r} cannot be loaded as {kind} "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    absent = sorted(info.get("missing_keys") or [])
    if absent:
        raise ConfigError(f"labeler: {path}: the weights lack {len(absent)} of the model's tensors, e.g. "
                          f"{', '.join(absent[:5])}")
    disparity = DEPTH_DISPARITY.get(model_type, True)
    if model_type == "depth_anything":
        disparity = config.get("depth_estimation_type", "relative") == "relative"
    return wrap(model), pre, disparity
