"""Top-down pose estimation: a vitkit backbone and the deconvolution heatmap head UniFormer uses.

UniFormer's COCO pose models (mmpose 0.16 ``TopDownSimpleHead``, dense-facts §3) take the backbone's last map
(stride 32) through three 4x4 transposed convolutions (stride 2, 256 channels, no bias), each followed by
BatchNorm and ReLU, then a 1x1 convolution to one heatmap per joint (stride 4 of the crop). The module names
follow mmpose's, so an official checkpoint's ``keypoint_head.*`` keys load as they are:
``keypoint_head.deconv_layers.{0,3,6}`` (deconvolutions), ``.{1,4,7}`` (BatchNorms), ``keypoint_head.final_layer``.

The loss is mmpose's ``JointsMSELoss(use_target_weight=True)``: per joint the mean squared error of the
heatmaps, both multiplied by the joint's visibility weight, averaged over joints. Decoding is mmpose's default
post-processing: the arg-max of each heatmap moved a quarter pixel towards its higher neighbour; with
``flip_test`` the flipped crop's heatmaps are flipped back, their left/right joints swapped, shifted one pixel
(``shift_heatmap=True``) and averaged with the plain ones.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.registry import create_model
from .backbone_hooks import BackboneHooks


class DeconvHead(nn.Module):
    """mmpose's TopDownSimpleHead: ``deconv_layers`` (deconv, BN, ReLU) x ``layers`` and a 1x1 ``final_layer``,
    initialised as mmpose does (normal std 0.001, zero bias)."""

    def __init__(self, in_channels: int, num_joints: int, width: int = 256, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        cin = in_channels
        for _ in range(layers):
            mods += [nn.ConvTranspose2d(cin, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                     nn.ReLU(inplace=True)]
            cin = width
        self.deconv_layers = nn.Sequential(*mods)
        self.final_layer = nn.Conv2d(cin, num_joints, 1)
        self.upsampling = 2 ** layers
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class TopDownPose(BackboneHooks, nn.Module):
    """Backbone (last map) + deconvolution head; ``forward(crops)`` gives heatmaps (B, K, H/4, W/4)."""

    def __init__(self, backbone: str, num_joints: int, *, flip_pairs: Sequence[tuple[int, int]] = (),
                 weights: str | None = None, strict: bool = True, head_width: int = 256, **overrides) -> None:
        super().__init__()
        self.backbone = create_model(backbone, weights=weights, strict=strict, features_only=True,
                                     out_indices=(-1,), **overrides)
        info = self.backbone.feature_info
        if info[0].get("temporal_reduction") is not None:
            raise ValueError(f"{backbone} is a video model; pose estimation takes an image backbone")
        self.keypoint_head = DeconvHead(info.channels(0), num_joints, head_width)
        self.heatmap_stride = info.reduction(0) // self.keypoint_head.upsampling
        self.num_joints = num_joints
        self.flip_pairs = [tuple(p) for p in flip_pairs]
        self.register_normalisation()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops``: (B, 3, H, W) in [0, 1]; returns heatmaps at 1/``heatmap_stride`` of the crop."""
        x = (crops - self.mean) / self.std
        return self.keypoint_head(self.backbone(x)[0])

    def flip_heatmaps(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a flipped crop as those of the plain crop (flip back, swap joints, shift one pixel)."""
        out = heatmaps.flip(-1)
        order = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            order[a], order[b] = b, a
        out = out[:, order]
        shifted = out.clone()
        shifted[..., 1:] = out[..., :-1]
        return shifted

    @torch.no_grad()
    def predict(self, crops: torch.Tensor, flip_test: bool = True) -> torch.Tensor:
        heat = self(crops)
        if flip_test:
            heat = (heat + self.flip_heatmaps(self(crops.flip(-1)))) / 2
        return heat


def joints_mse_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose JointsMSELoss(use_target_weight=True): (B, K, h, w) heatmaps, (B, K) weights."""
    w = weight[..., None, None].to(heatmaps.dtype)
    per_joint = ((heatmaps * w - target * w) ** 2).flatten(2).mean(-1)  # (B, K)
    return per_joint.mean(0).mean()


def decode_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, h, w) -> joint positions (B, K, 2) in heatmap pixels and scores (B, K) (mmpose default decode)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.float().flatten(2)
    score, idx = flat.max(-1)
    x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
    hm = F.pad(heatmaps.float(), (1, 1, 1, 1))
    bi = torch.arange(b)[:, None].expand(b, k)
    ki = torch.arange(k)[None].expand(b, k)
    xi, yi = x.long() + 1, y.long() + 1
    dx = hm[bi, ki, yi, xi + 1] - hm[bi, ki, yi, xi - 1]
    dy = hm[bi, ki, yi + 1, xi] - hm[bi, ki, yi - 1, xi]
    inner = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    x = x + torch.where(inner, torch.sign(dx) * 0.25, torch.zeros_like(x))
    y = y + torch.where(inner, torch.sign(dy) * 0.25, torch.zeros_like(y))
    return torch.stack([x, y], -1), score
