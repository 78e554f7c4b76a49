"""Class token and absolute position embedding for token models (ViT, MViT), image or video.

The position embedding is joint (``pos_embed``: (1, prefix + prod(grid), C)) or, for video, separate in space
and time (``pos_embed_spatial`` (1, H*W, C) + ``pos_embed_temporal`` (1, T, C) + ``pos_embed_class``), as the
MViT paper and PySlowFast name them. Either is resampled when the input's token grid differs from the
configured one, so any input size the patch embedding accepts runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from vitkit.layers import resample_pos_embed


class TokenEmbedding:
    """Mixin for an ``nn.Module``: call :meth:`init_tokens` in ``__init__``, then :meth:`tokens` in forward."""

    grid: tuple[int, ...]
    num_prefix_tokens: int
    cls_token: nn.Parameter | None
    pos_embed: nn.Parameter | None
    pos_embed_spatial: nn.Parameter | None
    pos_embed_temporal: nn.Parameter | None
    pos_embed_class: nn.Parameter | None

    def init_tokens(
        self, dim: int, grid: tuple[int, ...], class_token: bool, absolute: bool = True, separate: bool = False
    ) -> None:
        """Create the class token and the (joint or space/time-separate) position embedding, zero-filled."""
        self.grid = tuple(grid)
        self.num_prefix_tokens = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = self.pos_embed_spatial = self.pos_embed_temporal = self.pos_embed_class = None
        if not absolute:
            return
        if separate:
            if len(self.grid) != 3:
                raise ValueError("separate space/time position embeddings need a video (T, H, W) token grid")
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, math.prod(self.grid[1:]), dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.grid[0], dim))
            self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + math.prod(self.grid), dim))

    def position_embedding(self, grid: tuple[int, ...]) -> torch.Tensor | None:
        """The (1, prefix + prod(grid), C) position embedding for a token ``grid``, resampled if it differs."""
        if self.pos_embed is not None:
            return resample_pos_embed(self.pos_embed, grid, self.grid, self.num_prefix_tokens)
        if self.pos_embed_spatial is None:
            return None
        spatial = resample_pos_embed(self.pos_embed_spatial, grid[1:], self.grid[1:], 0)
        temporal = resample_pos_embed(self.pos_embed_temporal, grid[:1], self.grid[:1], 0)
        pe = (spatial.unsqueeze(1) + temporal.unsqueeze(2)).flatten(1, 2)
        if self.pos_embed_class is not None:
            pe = torch.cat([self.pos_embed_class, pe], dim=1)
        return pe

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """An embedded map (B, C, *grid) -> tokens (B, prefix + N, C) with the position embedding, and the grid."""
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        else:
            # token-major memory (the concatenation above makes it): a channels-first map's transposed view would
            # stay strided through the residual stream, and every LayerNorm on it copies it in the forward and
            # again in the backward (MViTv2-T's first stage: 43 ms of a 3.5 s fp32 step)
            x = x.contiguous()
        pe = self.position_embedding(grid)
        return (x if pe is None else x + pe), grid
