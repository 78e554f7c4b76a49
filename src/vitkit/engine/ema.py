"""Exponential moving average of a model's weights (``ema = decay * ema + (1 - decay) * w`` every step)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEma:
    """A frozen copy of the model whose floating-point state follows the training weights; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            s = src[k].detach()
            if v.dtype.is_floating_point:
                v.lerp_(s.to(v.dtype), 1.0 - self.decay)
            else:
                v.copy_(s)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
