"""Batch-level Mixup / CutMix with label smoothing, for images and clips.

Each call draws one ``lam`` for the whole batch and mixes sample ``b`` with
sample ``B-1-b`` (the flipped batch). CutMix pastes one box on the last two
(spatial) axes, the same box on every frame of a clip, and corrects ``lam``
to the box's real area. Targets are smoothed one-hots mixed with the same
``lam``: ``lam * smooth(y) + (1 - lam) * smooth(y.flip(0))``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["MixupCutmix", "smooth_one_hot"]


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot rows with ``1 - smoothing + smoothing/N`` on the class and ``smoothing/N`` elsewhere."""
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, dtype=torch.float32, device=y.device)
    return out.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)


class MixupCutmix:
    """``(x, y) -> (mixed x, soft targets)`` for ``x`` (B, C, H, W) or (B, C, T, H, W)."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, prob: float = 1.0,
                 generator: torch.Generator | None = None):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.label_smoothing, self.prob = switch_prob, label_smoothing, prob
        self.generator = generator
        self.last_lam = 1.0
        self.last_mode = "none"

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _beta(self, alpha: float) -> float:
        if self.generator is None:
            return float(torch.distributions.Beta(alpha, alpha).sample())
        seed = int(torch.randint(2**62, (), generator=self.generator))  # torch's Beta takes no generator
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def _mode(self) -> str:
        if self.prob <= 0 or self._rand() >= self.prob:
            return "none"
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if self._rand() < self.switch_prob else "mixup"
        if self.cutmix_alpha > 0:
            return "cutmix"
        return "mixup" if self.mixup_alpha > 0 else "none"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim not in (4, 5):
            raise ValueError(f"expected a batch (B,C,H,W) or (B,C,T,H,W), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"expected integer labels of shape ({x.shape[0]},), got {tuple(y.shape)}")
        mode = self._mode()
        lam = 1.0
        if mode == "mixup":
            lam = self._beta(self.mixup_alpha)
            x = x * lam + x.flip(0) * (1.0 - lam)
        elif mode == "cutmix":
            lam = self._beta(self.cutmix_alpha)
            h, w = x.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy = int(torch.randint(h, (), generator=self.generator))
            cx = int(torch.randint(w, (), generator=self.generator))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        self.last_lam, self.last_mode = lam, mode
        t = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        return x, t * lam + t.flip(0) * (1.0 - lam)
