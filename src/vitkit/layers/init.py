"""Weight initialisation, once for every family.

The official codes (ViT, Swin, MViT, UniFormer) draw Linear weights and position tables from timm's
``trunc_normal_(std=0.02)``, whose cut lies at the *absolute* values +-2: 100 standard deviations out. A normal
draw clamped to +-2 is therefore the same distribution, and several times faster than ``trunc_normal_``'s
inverse-erf sampling (seconds for the large variants on a loaded CPU).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


@torch.no_grad()
def clamped_normal_(tensor: torch.Tensor, std: float = 0.02, bound: float = 2.0) -> torch.Tensor:
    """In place: N(0, std) clamped to [-bound, bound] (= timm ``trunc_normal_(std, a=-bound, b=bound)``)."""
    return tensor.normal_(0.0, std).clamp_(-bound, bound)


@torch.no_grad()
def trunc_normal_init(modules: Iterable[nn.Module], std: float = 0.02) -> None:
    """timm/official init: Linear weights clamped-normal(std), biases zero; LayerNorm/GroupNorm weight 1, bias 0.

    Convolutions and BatchNorm keep PyTorch's defaults.
    """
    for m in modules:
        if isinstance(m, nn.Linear):
            clamped_normal_(m.weight, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
