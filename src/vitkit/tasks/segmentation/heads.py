"""Decode heads and neck of the official dense recipes, with mmseg's module names (so ``decode_head.*``,
``auxiliary_head.*`` and ``neck.*`` keys of the Swin / UniFormer segmentation checkpoints load unchanged).

- :class:`UPerHead` (UperNet, Xiao et al. 2018): a pyramid pooling module on the last map (``psp_modules``, pool
  scales 1/2/3/6, then ``bottleneck``), an FPN over the others (``lateral_convs``, top-down sums, ``fpn_convs``),
  every level upsampled to stride 4, concatenated and fused (``fpn_bottleneck``), dropout 0.1, ``conv_seg``.
  Swin / UniFormer ADE20K: 512 channels.
- :class:`FCNHead`: the auxiliary head on stage 3 (one 3x3 conv of 256 channels, no input concat), loss weight 0.4.
- :class:`FPN` + :class:`FPNHead` (Semantic FPN, Kirillov et al. 2019): a 256-wide FPN neck (1x1 laterals and 3x3
  outputs, with bias, no norm; nearest top-down), then per level 3x3 convs (128 channels) with 2x bilinear
  upsampling to stride 4, summed, ``conv_seg``. UniFormer Semantic FPN: FPN 256, head 128.

Every conv + BatchNorm + ReLU is a :class:`ConvModule` (keys ``conv``, ``bn``), as mmcv's.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvModule(nn.Module):
    """Conv2d (no bias when normalised) + BatchNorm2d + ReLU; mmcv's key names ``conv.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=not norm)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")  # mmcv ConvModule init
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x) if self.activate is not None else x


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as mmseg), a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SegHead(nn.Module):
    """The classifier end shared by every decode head: ``dropout`` (Dropout2d) then a 1x1 ``conv_seg``."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)  # mmseg BaseDecodeHead.init_weights
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)


class UPerHead(SegHead):
    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1) -> None:
        super().__init__(channels, num_classes, dropout)
        self.in_channels = list(in_channels)
        self.pool_scales = tuple(pool_scales)
        last = self.in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(last, channels, 1)) for s in self.pool_scales)
        self.bottleneck = ConvModule(last + len(self.pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [resize(m(x), x.shape[-2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([resize(o, size) for o in outs], dim=1))
        return self.cls_seg(fused)


class FCNHead(SegHead):
    """``num_convs`` 3x3 ConvModules on one input map (``in_index``), then the classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__(channels, num_classes, dropout)
        self.convs = nn.Sequential(
            *[ConvModule(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(num_convs)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.convs(x))


class FPN(nn.Module):
    """mmseg's FPN neck without extra levels: 1x1 laterals, nearest top-down sums, 3x3 outputs (bias, no norm)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm=False, act=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=False, act=False) for _ in in_channels)
        for m in self.modules():  # mmseg FPN.init_weights: xavier_init(distribution="uniform")
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        return [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]


class FPNHead(SegHead):
    """Semantic FPN: per level ``max(1, log2(stride / stride_0))`` 3x3 ConvModules, each followed by a 2x bilinear
    upsampling for levels coarser than the first (``scale_heads.{i}.{j}``), summed, then the classifier."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], channels: int, num_classes: int,
                 dropout: float = 0.1) -> None:
        super().__init__(channels, num_classes, dropout)
        self.scale_heads = nn.ModuleList()
        for i, (c, s) in enumerate(zip(in_channels, strides)):
            n = max(1, int(math.log2(s) - math.log2(strides[0])))
            layers: list[nn.Module] = []
            for k in range(n):
                layers.append(ConvModule(c if k == 0 else channels, channels, 3, padding=1))
                if s != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](inputs[0])
        for i in range(1, len(self.scale_heads)):
            out = out + resize(self.scale_heads[i](inputs[i]), out.shape[-2:])
        return self.cls_seg(out)
