"""Resampling of learned position embeddings and relative-position-bias tables to new grid sizes.

Used both when loading a checkpoint trained at another size and at run time for a new input size.
Resampling to the same size returns the input unchanged (bit-exact). While ``torch.compile`` traces, the
same-size shortcut is not taken: the size test would become a guard on the input size, so a model compiled with
``dynamic=True`` would recompile when it moves between its native size and any other. Interpolating to the same
size is an exact identity (linear, bicubic and trilinear weights at scale 1 are 1 and 0), so the numbers match.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .fused import is_tracing

_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def resample_grid(
    grid: torch.Tensor, new_size: Sequence[int], mode: str | None = None, antialias: bool = False
) -> torch.Tensor:
    """Resize a (1, C, *size) map to ``new_size``; bicubic in 2-D, trilinear in 3-D unless ``mode`` says otherwise."""
    new_size = tuple(int(s) for s in new_size)
    if not is_tracing() and tuple(grid.shape[2:]) == new_size:
        return grid
    rank = len(new_size)
    mode = mode or _MODES[rank]
    dtype = grid.dtype
    kwargs = {"align_corners": False} if mode != "nearest" else {}
    if antialias and mode in ("bilinear", "bicubic"):
        kwargs["antialias"] = True
    out = F.interpolate(grid.float(), size=new_size, mode=mode, **kwargs)
    return out.to(dtype)


def infer_grid(num_tokens: int, hint: Sequence[int] | None = None) -> tuple[int, ...]:
    """The (H, W) grid of a square token count, or ``hint`` if it matches; else raise."""
    if hint is not None and math.prod(hint) == num_tokens:
        return tuple(hint)
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"cannot infer the grid of {num_tokens} position-embedding tokens; pass the old grid size explicitly"
        )
    return (side, side)


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: Sequence[int],
    old_grid: Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str | None = None,
) -> torch.Tensor:
    """Resample a (1, prefix + prod(old_grid), C) token position embedding to ``new_grid``.

    Prefix tokens (class, distillation, register) are kept as they are; the grid part is interpolated.
    """
    if pos_embed.ndim != 3:
        raise ValueError(f"expected a (1, N, C) position embedding, got shape {tuple(pos_embed.shape)}")
    new_grid = tuple(int(s) for s in new_grid)
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    old_grid = infer_grid(n_grid, old_grid if old_grid is not None else None)
    if math.prod(old_grid) != n_grid:
        raise ValueError(f"old grid {old_grid} does not match {n_grid} position-embedding tokens")
    if not is_tracing() and old_grid == new_grid:
        return pos_embed
    prefix, tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = tokens.reshape(1, *old_grid, -1).movedim(-1, 1)
    grid = resample_grid(grid, new_grid, mode)
    tokens = grid.movedim(1, -1).reshape(1, math.prod(new_grid), -1)
    return torch.cat([prefix, tokens], dim=1)


def resample_rel_pos_table(
    table: torch.Tensor, old_window: Sequence[int], new_window: Sequence[int], mode: str | None = None
) -> torch.Tensor:
    """Resample a Swin relative-position-bias table (prod(2W-1), heads) from ``old_window`` to ``new_window``.

    The table is viewed as a (2W-1)^rank grid per head and interpolated (bicubic in 2-D, as the Swin paper
    fine-tunes at 384, trilinear in 3-D).
    """
    old = tuple(2 * w - 1 for w in old_window)
    new = tuple(2 * w - 1 for w in new_window)
    if old == new:
        return table
    if table.shape[0] != math.prod(old):
        raise ValueError(f"table has {table.shape[0]} rows, expected {math.prod(old)} for window {tuple(old_window)}")
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, *old)
    grid = resample_grid(grid, new, mode)
    return grid.reshape(heads, -1).T.contiguous()


def resample_1d(table: torch.Tensor, new_len: int) -> torch.Tensor:
    """Linearly resample a (L, C) table along its first axis (MViTv2 decomposed relative positions)."""
    if not is_tracing() and table.shape[0] == new_len:
        return table
    out = F.interpolate(table.T.unsqueeze(0).float(), size=new_len, mode="linear", align_corners=False)
    return out[0].T.to(table.dtype)
