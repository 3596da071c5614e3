"""The ControlNet annotators' edge networks, so their published `.pth` files load here strictly.

`controlnet_aux` itself cannot be installed without torchvision, so the two network classes are
written here from its published definitions (network code only: no downloading, no pre- or
post-processing beyond what its detectors do to the network's output):

- HED: `ControlNetHED_Apache2` from controlnet_aux 0.0.x `hed/__init__.py` (Apache-2.0, lllyasviel,
  "an improved version and model of HED edge detection"); weights `ControlNetHED.pth`
  (lllyasviel/Annotators). RGB input in 0..255; edge map = sigmoid(mean of the 5 side outputs,
  each resized to the input) as its `HEDdetector` computes it.
- PiDiNet: `PiDiNet` with the `carv4` pixel-difference layout, dil 24, sa (controlnet_aux
  `pidi/model.py`, MIT, Zhuo Su and Wenzhe Liu, "Pixel Difference Networks for Efficient Edge
  Detection"); weights `table5_pidinet.pth`, stored as {"state_dict": {"module.<name>": ...}}.
  BGR input in [0, 1]; edge map = the last (fused) sigmoid output, as `PidiNetDetector` does.

Both are wrapped (`EdgeAnnotator`) so the labeller sees one contract: RGB in [0, 1] in,
(N, 1, H, W) edge probability out.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- HED (controlnet_aux hed/__init__.py, Apache-2.0) ------------------------------------------

class DoubleConvBlock(nn.Module):
    def __init__(self, input_channel: int, output_channel: int, layer_number: int) -> None:
        super().__init__()
        self.convs = nn.Sequential()
        self.convs.append(nn.Conv2d(input_channel, output_channel, kernel_size=(3, 3), stride=(1, 1), padding=1))
        for _ in range(1, layer_number):
            self.convs.append(nn.Conv2d(output_channel, output_channel, kernel_size=(3, 3), stride=(1, 1), padding=1))
        self.projection = nn.Conv2d(output_channel, 1, kernel_size=(1, 1), stride=(1, 1), padding=0)

    def forward(self, x: torch.Tensor, down_sampling: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        if down_sampling:
            h = F.max_pool2d(h, kernel_size=(2, 2), stride=(2, 2))
        for conv in self.convs:
            h = F.relu(conv(h))
        return h, self.projection(h)


class ControlNetHED_Apache2(nn.Module):  # noqa: N801 - the published class name
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(size=(1, 3, 1, 1)))
        self.block1 = DoubleConvBlock(input_channel=3, output_channel=64, layer_number=2)
        self.block2 = DoubleConvBlock(input_channel=64, output_channel=128, layer_number=2)
        self.block3 = DoubleConvBlock(input_channel=128, output_channel=256, layer_number=3)
        self.block4 = DoubleConvBlock(input_channel=256, output_channel=512, layer_number=3)
        self.block5 = DoubleConvBlock(input_channel=512, output_channel=512, layer_number=3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = x - self.norm
        h, p1 = self.block1(h)
        h, p2 = self.block2(h, down_sampling=True)
        h, p3 = self.block3(h, down_sampling=True)
        h, p4 = self.block4(h, down_sampling=True)
        h, p5 = self.block5(h, down_sampling=True)
        return p1, p2, p3, p4, p5


# --- PiDiNet (controlnet_aux pidi/model.py, MIT, Zhuo Su, Wenzhe Liu) ---------------------------

CARV4 = ("cd", "ad", "rd", "cv") * 4  # the `carv4` layout of layers 0..15


def _pdc(op: str) -> Callable[..., torch.Tensor]:
    if op == "cv":
        return F.conv2d
    if op == "cd":
        def cd(x: torch.Tensor, w: torch.Tensor, bias: Any = None, stride: int = 1, padding: int = 0,
               dilation: int = 1, groups: int = 1) -> torch.Tensor:
            yc = F.conv2d(x, w.sum(dim=[2, 3], keepdim=True), stride=stride, padding=0, groups=groups)
            return F.conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups) - yc
        return cd
    if op == "ad":
        def ad(x: torch.Tensor, w: torch.Tensor, bias: Any = None, stride: int = 1, padding: int = 0,
               dilation: int = 1, groups: int = 1) -> torch.Tensor:
            s = w.shape
            flat = w.view(s[0], s[1], -1)
            wc = (flat - flat[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]]).view(s)  # clockwise
            return F.conv2d(x, wc, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return ad
    if op == "rd":
        def rd(x: torch.Tensor, w: torch.Tensor, bias: Any = None, stride: int = 1, padding: int = 0,
               dilation: int = 1, groups: int = 1) -> torch.Tensor:
            s = w.shape
            buf = torch.zeros(s[0], s[1], 25, device=w.device, dtype=w.dtype)
            flat = w.view(s[0], s[1], -1)
            buf[:, :, [0, 2, 4, 10, 14, 20, 22, 24]] = flat[:, :, 1:]
            buf[:, :, [6, 7, 8, 11, 13, 16, 17, 18]] = -flat[:, :, 1:]
            return F.conv2d(x, buf.view(s[0], s[1], 5, 5), bias, stride=stride, padding=2 * dilation,
                            dilation=dilation, groups=groups)
        return rd
    raise ValueError(f"unknown pixel-difference op {op!r}")


class PdcConv2d(nn.Module):
    """controlnet_aux's pidi `Conv2d`: a conv whose kernel is applied as a pixel difference."""

    def __init__(self, pdc: str, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.padding, self.groups, self.pdc = padding, groups, _pdc(pdc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pdc(x, self.weight, self.bias, 1, self.padding, 1, self.groups)


class CSAM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(channels, 4, kernel_size=1, padding=0)
        self.conv2 = nn.Conv2d(4, 1, kernel_size=3, padding=1, bias=False)
        self.sigmoid = nn.Sigmoid()
        nn.init.constant_(self.conv1.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.conv2(self.conv1(self.relu1(x))))


class CDCM(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, padding=0)
        self.conv2_1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, dilation=5, padding=5, bias=False)
        self.conv2_2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, dilation=7, padding=7, bias=False)
        self.conv2_3 = nn.Conv2d(out_channels, out_channels, kernel_size=3, dilation=9, padding=9, bias=False)
        self.conv2_4 = nn.Conv2d(out_channels, out_channels, kernel_size=3, dilation=11, padding=11, bias=False)
        nn.init.constant_(self.conv1.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class MapReduce(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1, padding=0)
        nn.init.constant_(self.conv.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PDCBlock(nn.Module):
    def __init__(self, pdc: str, inplane: int, ouplane: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.shortcut = nn.Conv2d(inplane, ouplane, kernel_size=1, padding=0)
        self.conv1 = PdcConv2d(pdc, inplane, inplane, kernel_size=3, padding=1, groups=inplane, bias=False)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(inplane, ouplane, kernel_size=1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = self.pool(x)
        y = self.conv2(self.relu2(self.conv1(x)))
        if self.stride > 1:
            x = self.shortcut(x)
        return y + x


class PiDiNet(nn.Module):
    """PiDiNet with dilation (CDCM) and spatial attention (CSAM), as `pidinet()` builds it (inplane 60, dil 24)."""

    def __init__(self, inplane: int = 60, dil: int = 24, pdcs: tuple[str, ...] = CARV4) -> None:
        super().__init__()
        c = inplane
        self.init_block = PdcConv2d(pdcs[0], 3, c, kernel_size=3, padding=1)
        self.block1_1, self.block1_2, self.block1_3 = (PDCBlock(pdcs[i], c, c) for i in (1, 2, 3))
        self.block2_1 = PDCBlock(pdcs[4], c, 2 * c, stride=2)
        self.block2_2, self.block2_3, self.block2_4 = (PDCBlock(pdcs[i], 2 * c, 2 * c) for i in (5, 6, 7))
        self.block3_1 = PDCBlock(pdcs[8], 2 * c, 4 * c, stride=2)
        self.block3_2, self.block3_3, self.block3_4 = (PDCBlock(pdcs[i], 4 * c, 4 * c) for i in (9, 10, 11))
        self.block4_1 = PDCBlock(pdcs[12], 4 * c, 4 * c, stride=2)
        self.block4_2, self.block4_3, self.block4_4 = (PDCBlock(pdcs[i], 4 * c, 4 * c) for i in (13, 14, 15))
        fuseplanes = (c, 2 * c, 4 * c, 4 * c)
        self.conv_reduces = nn.ModuleList(MapReduce(dil) for _ in range(4))
        self.attentions = nn.ModuleList(CSAM(dil) for _ in range(4))
        self.dilations = nn.ModuleList(CDCM(fuseplanes[i], dil) for i in range(4))
        self.classifier = nn.Conv2d(4, 1, kernel_size=1)
        nn.init.constant_(self.classifier.weight, 0.25)
        nn.init.constant_(self.classifier.bias, 0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[2:]
        x = self.init_block(x)
        x1 = self.block1_3(self.block1_2(self.block1_1(x)))
        x2 = self.block2_4(self.block2_3(self.block2_2(self.block2_1(x1))))
        x3 = self.block3_4(self.block3_3(self.block3_2(self.block3_1(x2))))
        x4 = self.block4_4(self.block4_3(self.block4_2(self.block4_1(x3))))
        outs = [F.interpolate(self.conv_reduces[i](self.attentions[i](self.dilations[i](xi))), (h, w),
                              mode="bilinear", align_corners=False) for i, xi in enumerate((x1, x2, x3, x4))]
        outs.append(self.classifier(torch.cat(outs, dim=1)))
        return [torch.sigmoid(r) for r in outs]


# --- the labeller's view ------------------------------------------------------------------------

class EdgeAnnotator(nn.Module):
    """RGB in [0, 1] → (N, 1, H, W) edge probability, with each annotator's own input convention."""

    def __init__(self, net: nn.Module, name: str) -> None:
        super().__init__()
        self.net, self.name = net, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "hed":
            h, w = x.shape[2:]
            sides = [F.interpolate(p, (h, w), mode="bilinear", align_corners=False) for p in self.net(x * 255.0)]
            return torch.sigmoid(torch.cat(sides, dim=1).mean(dim=1, keepdim=True))
        return self.net(x.flip(1))[-1]  # PiDiNet was trained on BGR


ANNOTATORS: dict[str, Callable[..., nn.Module]] = {"hed": ControlNetHED_Apache2, "pidinet": PiDiNet}


def published_state_dict(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The weights inside a published file: PiDiNet's are {"state_dict": {"module.<key>": ...}}."""
    sd = raw.get("state_dict", raw) if name == "pidinet" else raw
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def detect_annotator(raw: dict[str, Any]) -> str | None:
    """Which annotator a loaded `.pth` holds, from its key names (None: neither)."""
    keys = set(raw.get("state_dict", raw)) if isinstance(raw.get("state_dict"), dict) else set(raw)
    keys = {k[len("module."):] if k.startswith("module.") else k for k in keys}
    if "norm" in keys and any(k.startswith("block1.convs.") for k in keys):
        return "hed"
    if "init_block.weight" in keys and any(k.startswith("dilations.") for k in keys):
        return "pidinet"
    return None


def build_annotator(name: str, raw: dict[str, Any], path: str, arch_args: dict[str, Any] | None = None) -> nn.Module:
    """The wrapped network with the file's weights loaded strictly; a mismatch names the keys."""
    from uvd.errors import ConfigError

    net = ANNOTATORS[name](**(arch_args or {}))
    sd = published_state_dict(name, raw)
    want, have = set(net.state_dict()), set(sd)
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        raise ConfigError(f"labeler: {path} is not a complete {name} checkpoint: "
                          + "; ".join(s for s in (f"missing keys: {few(missing)}" if missing else "",
                                                  f"unexpected keys: {few(unexpected)}" if unexpected else "") if s))
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as err:  # same names, other shapes
        raise ConfigError(f"labeler: {path} does not fit {name}: {err}") from None
    return EdgeAnnotator(net, name)
