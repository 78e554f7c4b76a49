"""Channels-last (N, C, *grid) maps copied to channels-first memory, fast at large maps.

Such a copy transposes each sample's (positions, channels) matrix. PyTorch's general strided copy does that
slowly once a sample outgrows the caches, and its blocked 2-D transpose does not see a 4-D or 5-D tensor as one
matrix. Measured on a Sapphire Rapids core (one thread, median of 15; ms, general copy -> per-sample 2-D copy):

=====================  ==============  ===========  ===========
map (N, C, *grid)      bytes / sample  fp32         bf16
=====================  ==============  ===========  ===========
1, 64, 16, 56, 56      12.2 / 6.1 MB   21.2 -> 4.1  15.3 -> 3.0
1, 384, 8, 28, 28      9.2 / 4.6 MB    19.3 -> 8.2  7.0 -> 6.6
1, 1536, 8, 14, 14     9.2 / 4.6 MB    21.3 -> 10.2 6.7 -> 6.4
1, 3072, 8, 7, 7       4.6 / 2.3 MB    3.4 -> 2.2   2.3 -> 1.9
1, 768, 8, 14, 14      4.6 / 2.3 MB    3.7 -> 4.0   1.9 -> 1.6
8, 192, 56, 56         2.3 / 1.1 MB    11.8 -> 15.1 8.2 -> 10.8
8, 384, 28, 28         1.1 / 0.6 MB    4.1 -> 5.7   2.4 -> 2.1
=====================  ==============  ===========  ===========

(and 1, 384, 8, 56, 56: 115-121 -> 45-47 fp32, 80-83 -> 21-32 bf16), so samples of at least
:data:`TRANSPOSE_MIN_BYTES` are copied one 2-D transpose each: the video maps whose depthwise backward
(:mod:`vitkit.layers.depthwise`) takes channels-first copies. The other direction, channels-first to
channels-last, is as fast or faster by the general copy at all these sizes and stays with it.
"""
from __future__ import annotations

import math

import torch

#: bytes per sample from which a channels-last map is copied to channels-first one 2-D transpose per sample
TRANSPOSE_MIN_BYTES = 4 << 20


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, *grid) contiguous (channels-first memory); ``x`` itself when it already is."""
    if x.is_contiguous():
        return x
    last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if last is None or not x.is_contiguous(memory_format=last) \
            or x[0].numel() * x.element_size() < TRANSPOSE_MIN_BYTES:
        return x.contiguous()
    C, positions = x.shape[1], math.prod(x.shape[2:])
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for dst, src in zip(out, x):  # (C, *grid) each; src's memory is (positions, C)
        dst.view(C, positions).copy_(src.movedim(0, -1).reshape(positions, C).t())
    return out
