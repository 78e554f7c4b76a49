"""Patch (2-D) and cube (3-D) embedding: one strided convolution whose rank follows ``patch_size``.

A CPU bf16 autocast training step (on a CPU with bf16 units) runs a large non-overlapping patch (at least
:data:`GEMM_MIN_PATCH` pixels, stride equal to the patch, no padding: ViT's 14, 16 and 32) as one matrix product
over the unfolded patches: oneDNN's strided bf16 convolution backward is slow there. Forward + backward of
ViT-B/16's embedding at batch 8, one thread on Sapphire Rapids: 83 -> 19 ms (ViT-B/32: 514 -> 29 ms; ViT-H/14:
166 -> 45 ms). Values agree with the convolution's to bf16 rounding (the sums run in another order). float32
keeps the convolution: the product was only 10-50 % faster there, and it keeps the unfolded patches for the
backward where the convolution keeps the input image that exists anyway (ViT-S/16: 5 MB above timm's peak).
Swin's 4x4 patches were measured slower as a product; inference, tracing and other devices keep the convolution.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .fused import projection, trains_in_bf16
from .nd import conv_nd, to_tuple

#: the fewest pixels per patch (times frames for a cube) that a CPU training step embeds as a matrix product
GEMM_MIN_PATCH = 64


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

    def _as_gemm(self, x: torch.Tensor) -> bool:
        """Whether this call embeds ``x`` as a matrix product (module doc)."""
        return (trains_in_bf16(x, self.proj.weight) and self.proj.weight.requires_grad
                and self.stride == self.patch_size and not any(self.padding) and self.proj.groups == 1
                and math.prod(self.patch_size) >= GEMM_MIN_PATCH
                and all(s % p == 0 for s, p in zip(x.shape[2:], self.patch_size)))

    def _embed_gemm(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution as (patches, C * patch) x (C * patch, D): returns (B, D, *grid), channels-last in memory,
        so that flattening it to tokens is a view."""
        B, C, *size = x.shape
        grid = [s // p for s, p in zip(size, self.patch_size)]
        split = [d for g, p in zip(grid, self.patch_size) for d in (g, p)]
        rank = len(grid)
        # (B, C, g1, p1, g2, p2, ...) -> (B, g1, g2, ..., C, p1, p2, ...)
        order = [0, *(2 + 2 * i for i in range(rank)), 1, *(3 + 2 * i for i in range(rank))]
        patches = x.reshape(B, C, *split).permute(order).reshape(B, math.prod(grid), -1)
        tokens = projection(patches, self.proj.weight.flatten(1), self.proj.bias)
        return tokens.view(B, *grid, -1).movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self._embed_gemm(x) if self._as_gemm(x) else self.proj(x)
        if not isinstance(self.norm, nn.Identity):
            # a channels-first map copied token-major once: LayerNorm would copy its strided view in the forward
            # and again in the backward; the result is channels-last in memory, which the blocks after it read
            x = self.norm(x.movedim(1, -1).contiguous()).movedim(-1, 1)
        return x
