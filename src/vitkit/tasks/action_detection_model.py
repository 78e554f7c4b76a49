"""AVA-style action detection: a video backbone's last map, RoIAlign on given person boxes, a multi-label head.

PySlowFast's detection head (``ResNetRoIHead`` in ``slowfast/models/head_helper.py``, which its MViT uses when
``DETECTION.ENABLE``; dense-facts §6): the last feature map (B, C, T, H, W) is averaged over time, RoIAlign takes a
``resolution`` x ``resolution`` (7) grid per box at ``1 / stride`` (``sampling_ratio=0``, ``aligned=True``), a
max-pool over that grid gives one C-vector per box, then dropout (0.5 in the AVA configs) and a linear layer give
one logit per action. PySlowFast applies a sigmoid in the head and trains with ``BCELoss``; here the head returns
logits and the loss is ``binary_cross_entropy_with_logits`` (the same function, numerically stable), the sigmoid
is taken at test time. The module names follow the official ones (``head.projection``), so a PySlowFast AVA
checkpoint's head keys read as they are.

The boxes are in clip pixels (the data's crop), one tensor (N_i, 4) per clip; the backbone is any vitkit video
model's backbone view (``create_model(name, features_only=True, out_indices=(-1,))``: MViT, UniFormer, ViT, Swin).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from torchvision.ops import roi_align

from vitkit.registry import create_model

from .backbone_hooks import BackboneHooks


class RoIHead(nn.Module):
    """Temporal average pool, RoIAlign, spatial max-pool, dropout, linear (PySlowFast ``ResNetRoIHead``)."""

    def __init__(self, in_channels: int, num_classes: int, stride: int, resolution: int = 7,
                 dropout: float = 0.5, aligned: bool = True) -> None:
        super().__init__()
        self.stride, self.resolution, self.aligned = stride, resolution, aligned
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features`` (B, C, T, H, W), ``boxes`` B tensors (N_i, 4) in input pixels -> logits (sum N_i, K)."""
        x = features.mean(2)  # AvgPool3d over all of T
        rois = [b.to(x.dtype) for b in boxes]
        x = roi_align(x, rois, output_size=self.resolution, spatial_scale=1.0 / self.stride,
                      sampling_ratio=0, aligned=self.aligned)
        x = x.amax((-2, -1))  # MaxPool2d(resolution)
        return self.projection(self.dropout(x))


class ActionDetector(BackboneHooks, nn.Module):
    """Backbone (last map) + :class:`RoIHead`; ``forward({"clips", "boxes"})`` gives per-box action logits."""

    def __init__(self, backbone: str, num_classes: int, *, weights: str | None = None, strict: bool = True,
                 dropout: float = 0.5, resolution: int = 7, **overrides) -> None:
        super().__init__()
        self.backbone = create_model(backbone, weights=weights, strict=strict, features_only=True,
                                     out_indices=(-1,), **overrides)
        info = self.backbone.feature_info
        if info[0].get("temporal_reduction") is None:
            raise ValueError(f"{backbone} is an image model; action detection takes a video backbone "
                             "(mvit_base_16x4, uniformer_small_8x8 ...)")
        self.head = RoIHead(info.channels(0), num_classes, info.reduction(0), resolution, dropout)
        self.num_classes = num_classes
        self.register_normalisation(video=True)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """``batch["clips"]`` (B, 3, T, H, W) in [0, 1], ``batch["boxes"]`` B tensors (N_i, 4) -> (sum N_i, K)."""
        x = (batch["clips"] - self.mean) / self.std
        return self.head(self.backbone(x)[0], batch["boxes"])
