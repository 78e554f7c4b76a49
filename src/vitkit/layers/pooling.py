"""Pooling over token grids (MViT's pooling attention and pooled skip connections), for 2-D and 3-D grids.

Tokens are (B, N, C) or per head (B, heads, N, C), laid out as ``prefix + prod(grid)``: the prefix tokens
(class token) pass through unpooled and are concatenated back in front; the optional norm then runs over all
tokens, prefix included, as the official MViT code does. The grid rank (2 for images, 3 for video) follows
the length of ``grid``, so one implementation serves both.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .depthwise import TiledFilters, conv_float32_grads, depthwise_conv, float32_on_this_device
from .nd import avgpool_nd, conv_nd, maxpool_nd

POOL_MODES = ("conv", "max", "avg")


def make_pool(
    mode: str, channels: int, kernel: Sequence[int], stride: Sequence[int]
) -> nn.Module | None:
    """The pooling operator of ``mode`` for a grid of rank ``len(kernel)``, or None when it would be an identity.

    ``conv``: depthwise convolution without bias (shared across heads, one filter per channel); ``max`` / ``avg``:
    max or average pooling. Padding is ``kernel // 2``; pooling is skipped only if kernel and stride are all ones.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"pooling mode must be one of {POOL_MODES}, got {mode!r}")
    kernel, stride = tuple(int(k) for k in kernel), tuple(int(s) for s in stride)
    if len(kernel) != len(stride):
        raise ValueError(f"pooling kernel {kernel} and stride {stride} have different ranks")
    if math.prod(kernel) == 1 and math.prod(stride) == 1:
        return None
    rank = len(kernel)
    padding = tuple(k // 2 for k in kernel)
    if mode == "conv":
        return conv_nd(rank, channels, channels, kernel, stride, padding, groups=channels, bias=False)
    if mode == "max":
        return maxpool_nd(rank, kernel, stride, padding)
    return PaddedAvgPool(kernel, stride, padding)


class PaddedAvgPool(nn.Module):
    """Average pooling with zero padding counted in the mean (``count_include_pad=True``), any rank.

    Pads explicitly before pooling so that maps smaller than the kernel (late stages at small inputs) still work;
    ``nn.AvgPool3d`` refuses those even when the padding would cover the kernel.
    """

    def __init__(self, kernel_size: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...]) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.pool = avgpool_nd(len(kernel_size), kernel_size, stride, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = [p for p in reversed(self.padding) for _ in range(2)]
        return self.pool(F.pad(x, pad))


def pooled_grid(grid: Sequence[int], pool: nn.Module | None) -> tuple[int, ...]:
    """The grid size after ``pool`` (no tensor needed)."""
    if pool is None:
        return tuple(grid)
    k = _tuple(pool.kernel_size, len(grid))
    s = _tuple(pool.stride, len(grid))
    p = _tuple(pool.padding, len(grid))
    return tuple((g + 2 * pp - kk) // ss + 1 for g, kk, ss, pp in zip(grid, k, s, p))


def _tuple(v, rank: int) -> tuple[int, ...]:
    return (v,) * rank if isinstance(v, int) else tuple(v)


def pool_tokens(
    x: torch.Tensor,
    pool: nn.Module | None,
    grid: Sequence[int],
    num_prefix: int = 1,
    norm: nn.Module | None = None,
    weight: torch.Tensor | TiledFilters | None = None,
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pool the grid tokens of ``x`` ((B, N, C) or (B, heads, N, C)); returns the tokens and the new grid.

    ``N`` must be ``num_prefix + prod(grid)``; a mismatch raises naming both. ``norm`` (over C) runs after the
    prefix tokens are put back, as in the official code. With ``pool=None`` only the norm applies.
    ``weight`` (C, 1, *kernel) replaces a conv pool's depthwise filters, e.g. its per-head filters tiled over
    all heads so that (B, N, heads * head_dim) tokens pool in one call, with no per-head layout copy
    (:class:`TiledFilters`: the bf16 training backward keeps only the per-head filters).
    """
    grid = tuple(int(g) for g in grid)
    if pool is None:
        return (norm(x) if norm is not None else x), grid
    if x.shape[-2] != num_prefix + math.prod(grid):
        raise ValueError(
            f"token count {x.shape[-2]} does not match {num_prefix} prefix tokens + grid {grid} "
            f"({num_prefix + math.prod(grid)})"
        )
    lead = x.shape[:-2]
    C = x.shape[-1]
    # split, not two slices: the backward joins the two gradients in one copy, where each slice's backward
    # fills a zero tensor of the whole input and the two are added (MViT-B's stage 1: 38 MB each)
    prefix, tokens = x.split([num_prefix, x.shape[-2] - num_prefix], dim=-2) if num_prefix else (None, x)
    # (..., N, C) -> dense (M, *grid, C) -> channels-first view (M, C, *grid) that is channels-last in memory:
    # oneDNN's depthwise / pooling kernels run 10-50x faster on it than on a strided or NC(T)HW input
    maps = tokens.reshape(-1, *grid, C).contiguous().movedim(-1, 1)
    if weight is None and isinstance(pool, (nn.Conv2d, nn.Conv3d)) and pool.bias is None \
            and pool.groups == pool.in_channels == pool.out_channels:
        weight = pool.weight
    if weight is not None:
        if maps.dtype in (torch.bfloat16, torch.float16) and float32_on_this_device(maps):
            maps = conv_float32_grads(maps, weight, None, pool.stride, pool.padding, C)
        else:
            tensor = weight.tensor() if isinstance(weight, TiledFilters) else weight
            maps = depthwise_conv(maps, tensor, pool.stride, pool.padding)
    else:
        maps = pool(maps)
    new_grid = tuple(maps.shape[2:])
    tokens = maps.movedim(1, -1).reshape(*lead, math.prod(new_grid), C)
    out = torch.cat([prefix, tokens], dim=-2) if num_prefix else tokens
    if norm is not None:
        out = norm(out)
    return out, new_grid
