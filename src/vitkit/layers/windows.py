"""Window bookkeeping for (shifted) window attention, for 2-D and 3-D grids alike.

Everything here depends only on Python ints (grid, window, shift) and a device, so it is computed once per
size and device and kept in one bounded :class:`~vitkit.layers.cache.TensorCache` (safe after inference mode,
rebuilt while tracing), never rebuilt in a forward pass, and works on the ``meta`` device:

* :func:`fit_window` - the rule for windows larger than the map (clip the window to the map, no shift there);
* :func:`window_order` - one gather index that pads, cyclically shifts and partitions a token grid into
  windows (and its inverse, which also un-shifts and crops) - one copy each way instead of pad, roll,
  permute, permute, roll, crop;
* :func:`shift_mask` - the additive mask (0 / -100, as the official code) that keeps tokens of the regions a
  cyclic shift brought together from attending to each other;
* :func:`relative_position_index` - where each (query, key) pair of a window reads the bias table.

:func:`window_partition` / :func:`window_reverse` are the plain reshape/permute forms (no shift, no padding).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .cache import TensorCache
from .fused import is_tracing

MASK_VALUE = -100.0  # the official Swin / Video Swin value: exp(-100) underflows, no NaN in low precision
# per (kind, sizes, device); the largest entries are shift masks (Video Swin at 32x224^2: 79 MB in stage 1)
_CACHE = TensorCache(maxsize=256, max_bytes=512 << 20)


def _ints(v: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in v)


def fit_window(
    grid: Sequence[int], window: Sequence[int], shift: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Clip a window to the map: along a dimension where the map is no larger than the window, the window
    becomes the map and the shift is zero (the official Swin / Video Swin rule, applied per dimension)."""
    w, s = list(window), list(shift)
    for d, g in enumerate(grid):
        if g <= w[d]:
            w[d], s[d] = int(g), 0
    return tuple(w), tuple(s)


def padded_grid(grid: Sequence[int], window: Sequence[int]) -> tuple[int, ...]:
    """``grid`` rounded up to a multiple of ``window`` per dimension."""
    return tuple(-(-g // w) * w for g, w in zip(grid, window))


def window_partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """(B, *grid, C) with grid divisible by ``window`` -> (B * num_windows, prod(window), C)."""
    B, *grid, C = x.shape
    rank = len(window)
    shape = [B]
    for g, w in zip(grid, window):
        shape += [g // w, w]
    perm = [0] + [1 + 2 * d for d in range(rank)] + [2 + 2 * d for d in range(rank)] + [2 * rank + 1]
    return x.reshape(*shape, C).permute(perm).reshape(-1, math.prod(window), C)


def window_reverse(windows: torch.Tensor, window: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * num_windows, prod(window), C) -> (B, *grid, C)."""
    rank = len(window)
    counts = [g // w for g, w in zip(grid, window)]
    C = windows.shape[-1]
    x = windows.reshape(-1, *counts, *window, C)
    perm = [0]
    for d in range(rank):
        perm += [1 + d, 1 + rank + d]
    return x.permute(*perm, 2 * rank + 1).reshape(-1, *grid, C)


def _grid_positions(grid: tuple[int, ...]) -> torch.Tensor:
    """(prod(grid), rank) integer coordinates in row-major order."""
    axes = [torch.arange(g) for g in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


def _window_order(
    grid: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    padded = padded_grid(grid, window)
    rank = len(grid)
    # q: position in the shifted, padded map, enumerated window by window
    counts = [p // w for p, w in zip(padded, window)]
    win = _grid_positions(tuple(counts))  # (nW, rank)
    inner = _grid_positions(window)  # (N, rank)
    q = win[:, None, :] * torch.tensor(window) + inner[None, :, :]  # (nW, N, rank)
    # a roll by -shift puts padded position (q + shift) mod P at q
    p = (q + torch.tensor(shift)) % torch.tensor(padded)
    strides = [math.prod(padded[d + 1 :]) for d in range(rank)]
    order = (p * torch.tensor(strides)).sum(-1).reshape(-1)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    # the unpadded grid's entries, row-major, read at their flat positions in the padded grid (no boolean mask:
    # its data-dependent size would break a torch.compile graph; no slice: under dynamic shapes a slice's end
    # clamp and the reshape of a possibly non-contiguous slice would guard on whether the grid was padded)
    real = inverse[(_grid_positions(grid) * torch.tensor(strides)).sum(-1)]
    return order, real


def _cached(kind: str, build: Callable, args: tuple, device: torch.device):
    """``build(*args)`` (CPU tensors, a tuple of them, or None) moved to ``device``, cached per (kind, args, device)."""

    def make():
        out = build(*args)
        if isinstance(out, tuple):
            return tuple(t.to(device) for t in out)
        return out if out is None else out.to(device)

    return _CACHE.get((kind, args, device), make)


def window_order(
    grid: Sequence[int], window: Sequence[int], shift: Sequence[int], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather indices for windowing a zero-padded token grid.

    ``order`` (length prod(padded grid)) takes tokens of the padded grid, flattened, to window order after a
    cyclic shift by ``-shift`` (windows row-major, tokens row-major inside a window: the official layout).
    ``inverse`` (length prod(grid)) takes window-ordered tokens back to the unpadded grid, shift undone.
    """
    return _cached("order", _window_order, (_ints(grid), _ints(window), _ints(shift)), torch.device(device))


class _GatherTokens(torch.autograd.Function):
    """``x.index_select(1, index)`` for a permutation ``index`` of dim 1; the backward gathers the gradient with
    the inverse permutation instead of scattering it into zeros (``index_select``'s own backward: a zero fill
    and ``index_add_``, about twice the memory traffic)."""

    @staticmethod
    def forward(ctx, x, index, inverse):  # noqa: D401 - autograd signature
        ctx.save_for_backward(inverse)
        return x.index_select(1, index)

    @staticmethod
    def backward(ctx, grad):
        inverse, = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def permute_tokens(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``x.index_select(1, index)`` where ``index`` permutes dim 1 and ``inverse`` undoes it (``x[:, index]
    [:, inverse] == x``): with autograd, the gradient is gathered back with ``inverse`` (:class:`_GatherTokens`)."""
    if not (torch.is_grad_enabled() and x.requires_grad) or is_tracing():
        return x.index_select(1, index)
    return _GatherTokens.apply(x, index, inverse)


def _shift_mask(padded: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...]) -> torch.Tensor | None:
    if not any(shift):
        return None
    # region label per dimension on the shifted map: [0, P-w) -> 0, [P-w, P-s) -> 1, [P-s, P) -> 2
    label = torch.zeros(padded, dtype=torch.long)
    for d, (p, w, s) in enumerate(zip(padded, window, shift)):
        if s == 0:
            continue
        r = torch.zeros(p, dtype=torch.long)
        r[p - w : p - s] = 1
        r[p - s :] = 2
        view = [1] * len(padded)
        view[d] = p
        label = label + r.view(view) * 3**d
    windows = window_partition(label.unsqueeze(0).unsqueeze(-1), window).squeeze(-1)  # (nW, N)
    same = windows[:, :, None] == windows[:, None, :]
    return torch.zeros(same.shape).masked_fill_(~same, MASK_VALUE)


def shift_mask(
    padded: Sequence[int], window: Sequence[int], shift: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """(num_windows, N, N) additive mask for a map of size ``padded`` shifted by ``shift``; None if no shift.

    Windows are numbered as :func:`window_order` / :func:`window_partition` number them.
    """
    padded, window, shift = _ints(padded), _ints(window), _ints(shift)
    if not any(shift):
        return None
    return _cached("mask", _shift_mask, (padded, window, shift), torch.device(device))


def _relative_position_index(window: tuple[int, ...], table_window: tuple[int, ...], mode: str) -> torch.Tensor:
    if mode == "slice":
        n = math.prod(window)
        rows = torch.arange(n)  # gathered, not sliced: a slice guards a traced n on equalling the full window
        return _relative_position_index(table_window, table_window, "offset")[rows[:, None], rows[None, :]]
    pos = _grid_positions(window)
    rel = pos[:, None, :] - pos[None, :, :] + torch.tensor(table_window) - 1  # (N, N, rank), >= 0
    sizes = [2 * w - 1 for w in table_window]
    strides = torch.tensor([math.prod(sizes[d + 1 :]) for d in range(len(sizes))])
    return (rel * strides).sum(-1)


def relative_position_index(
    window: Sequence[int],
    table_window: Sequence[int] | None = None,
    mode: str = "offset",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(N, N) rows of a ((2W-1)^rank, heads) bias table for the token pairs of a ``window``.

    ``table_window`` is the window the table was made for (default: ``window``). For a smaller (clipped)
    window, ``mode="offset"`` reads the table entry of each pair's true relative offset; ``"slice"`` takes the
    top-left N x N block of the full window's index, as official Video Swin and torchvision ``swin3d_*`` do.
    """
    window = _ints(window)
    table_window = _ints(table_window) if table_window is not None else window
    if mode not in ("offset", "slice"):
        raise ValueError(f"mode must be 'offset' or 'slice', got {mode!r}")
    if any(w > t for w, t in zip(window, table_window)):
        raise ValueError(f"window {window} is larger than the bias table's window {table_window}")
    if not is_tracing() and window == table_window:  # a shortcut only (both modes agree there): no size guard
        mode = "offset"
    return _cached("index", _relative_position_index, (window, table_window, mode), torch.device(device))
