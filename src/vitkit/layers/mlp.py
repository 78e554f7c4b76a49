"""The transformer feed-forward network, on tokens (Linear) or on maps (1x1 convolution of any rank)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .nd import conv_nd


class Mlp(nn.Module):
    """``fc1 -> act -> drop -> fc2 -> drop``; with ``rank`` set, fc1/fc2 are 1x1 convolutions on (B, C, *grid)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        if rank is None:
            self.fc1 = nn.Linear(in_features, hidden_features)
            self.fc2 = nn.Linear(hidden_features, out_features)
        else:
            self.fc1 = conv_nd(rank, in_features, hidden_features, 1)
            self.fc2 = conv_nd(rank, hidden_features, out_features, 1)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
