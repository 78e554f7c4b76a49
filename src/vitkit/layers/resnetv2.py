"""The BiT ResNet (weight-standardised convolutions, GroupNorm, TF 'SAME' padding) used as the stem of hybrid ViTs.

As the ViT paper's R50+ViT-B/16: root 7x7/2 conv -> GN -> ReLU -> 3x3/2 max pool, then bottleneck stages
(3, 4, 9) with the stride on the 3x3 convolution; the output is a 1024-channel map at stride 16.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one axis."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    ph = same_padding(x.shape[-2], kernel, stride)
    pw = same_padding(x.shape[-1], kernel, stride)
    if not any(ph + pw):
        return x
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=value)


class StdConv2dSame(nn.Conv2d):
    """Conv2d with weight standardisation (per output channel, biased variance) and 'SAME' padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, eps: float = 1e-8) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        w = self.weight
        flat = w.reshape(w.shape[0], -1)
        var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
        w = ((flat - mean) * torch.rsqrt(var + self.eps)).reshape_as(w)
        return F.conv2d(x, w, None, self.stride, 0, self.dilation, self.groups)


class _Downsample(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_ch, out_ch, 1, stride)
        self.norm = nn.GroupNorm(32, out_ch, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with GroupNorm after each, ReLU after the sum (non-pre-activation BiT)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        mid = out_ch // 4
        self.downsample = _Downsample(in_ch, out_ch, stride) if (stride != 1 or in_ch != out_ch) else None
        self.conv1 = StdConv2dSame(in_ch, mid, 1)
        self.norm1 = nn.GroupNorm(32, mid, eps=1e-5)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride)
        self.norm2 = nn.GroupNorm(32, mid, eps=1e-5)
        self.conv3 = StdConv2dSame(mid, out_ch, 1)
        self.norm3 = nn.GroupNorm(32, out_ch, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class _Stage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *[Bottleneck(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class _Stem(nn.Module):
    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_chans, width, 7, 2)
        self.norm = nn.GroupNorm(32, width, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)


class ResNetV2Stem(nn.Module):
    """BiT ResNet body without head: ``layers`` bottlenecks per stage, widths 256 * 2^i, output stride 4 * 2^(n-1)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 9), in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        self.stem = _Stem(in_chans, width)
        stages, in_ch = [], width
        for i, depth in enumerate(layers):
            out_ch = 256 * 2**i
            stages.append(_Stage(in_ch, out_ch, depth, 1 if i == 0 else 2))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_ch
        self.reduction = 4 * 2 ** (len(layers) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))
