"""Patch (2-D) and cube (3-D) embedding: one strided convolution whose rank follows ``patch_size``."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from .nd import conv_nd, to_tuple


class PatchEmbed(nn.Module):
    """Conv(k=patch, s=stride, p=padding) from (B, C, *grid) to (B, D, *grid'), optionally normalised on channels.

    ``patch_size`` of length 2 gives a patch embedding, of length 3 a cube embedding. With ``strict_size`` the
    input size must be a multiple of the stride (ViT's VALID patches); the error names the size expected.
    """

    def __init__(
        self,
        patch_size: int | Sequence[int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        rank: int | None = None,
        norm_layer: Callable[[int], nn.Module] | None = None,
        bias: bool = True,
        strict_size: bool = True,
    ) -> None:
        super().__init__()
        rank = rank or (len(patch_size) if not isinstance(patch_size, int) else 2)
        self.rank = rank
        self.patch_size = to_tuple(patch_size, rank)
        self.stride = to_tuple(stride if stride is not None else patch_size, rank)
        self.padding = to_tuple(padding, rank)
        self.in_chans = in_chans
        self.strict_size = strict_size
        self.proj = conv_nd(rank, in_chans, embed_dim, self.patch_size, self.stride, self.padding, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """The token grid for an input of spatial ``size``."""
        return tuple(
            (s + 2 * p - k) // st + 1 for s, p, k, st in zip(size, self.padding, self.patch_size, self.stride)
        )

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.rank + 2:
            layout = "(B, C, H, W)" if self.rank == 2 else "(B, C, T, H, W)"
            raise ValueError(f"expected a {self.rank + 2}-D input {layout}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if self.strict_size:
            size = tuple(x.shape[2:])
            if any(s % st for s, st in zip(size, self.stride)):
                raise ValueError(
                    f"input size {size} is not divisible by the patch size {self.stride}; "
                    f"resize or crop to a multiple of it"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.proj(x)
        if not isinstance(self.norm, nn.Identity):
            x = self.norm(x.movedim(1, -1)).movedim(-1, 1)
        return x
