"""Rank-generic constructors: one call site builds the 2-D (image) or 3-D (video) version of a layer."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def _pick(table: dict, rank: int, what: str):
    if rank not in table:
        raise ValueError(f"{what} supports spatial rank 1, 2 or 3, got {rank}")
    return table[rank]


def to_tuple(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    """Broadcast an int to a ``rank``-tuple; check the length of a sequence."""
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"expected {rank} values, got {value}")
    return value


def conv_nd(rank: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv{rank}d(*args, **kwargs)``."""
    return _pick(_CONV, rank, "conv_nd")(*args, **kwargs)


def batchnorm_nd(rank: int, *args, **kwargs) -> nn.Module:
    """``nn.BatchNorm{rank}d(*args, **kwargs)``."""
    return _pick(_BN, rank, "batchnorm_nd")(*args, **kwargs)


def maxpool_nd(rank: int, *args, **kwargs) -> nn.Module:
    return _pick(_MAXPOOL, rank, "maxpool_nd")(*args, **kwargs)


def avgpool_nd(rank: int, *args, **kwargs) -> nn.Module:
    return _pick(_AVGPOOL, rank, "avgpool_nd")(*args, **kwargs)


def pad_to_multiple(x: torch.Tensor, multiple: Sequence[int], first_dim: int) -> torch.Tensor:
    """Zero-pad dims ``first_dim .. first_dim + len(multiple) - 1`` of ``x`` at their end to multiples of
    ``multiple`` (a patch, a window); ``x`` itself when nothing is missing."""
    sizes = x.shape[first_dim:first_dim + len(multiple)]
    missing = [(-s) % m for s, m in zip(sizes, multiple)]
    if not any(missing):
        return x
    trailing = x.ndim - first_dim - len(multiple)  # F.pad lists dims from the last one
    spec = [0, 0] * trailing
    for p in reversed(missing):
        spec += [0, p]
    return F.pad(x, spec)
