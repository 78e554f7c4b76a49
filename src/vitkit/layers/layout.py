"""Channels-last (N, C, *grid) maps copied to channels-first memory, fast at large maps.

Such a copy transposes each sample's (positions, channels) matrix. PyTorch's general strided copy does that
slowly once a sample outgrows the caches, and its blocked 2-D transpose does not see a 4-D or 5-D tensor as one
matrix. Measured on a Sapphire Rapids core (one thread, median of 11-15; ms, general copy -> per-sample 2-D copy;
two runs, the second while other work shared the machine):

=====================  ==============  ===========================  ===========================
map (N, C, *grid)      bytes / sample  fp32                         bf16
=====================  ==============  ===========================  ===========================
1, 384, 8, 56, 56      36.8 / 18.4 MB  115-121 -> 45-47             80-83 -> 21-32
1, 192, 8, 56, 56      18.4 / 9.2 MB   41-46 -> 10-16               36-41 -> 7-13
1, 64, 16, 56, 56      12.2 / 6.1 MB   21-30 -> 4-10                15-24 -> 3-6
1, 384, 8, 28, 28      9.2 / 4.6 MB    19-21 -> 8-11                5.6-7.0 -> 6.6-10.9
1, 1536, 8, 14, 14     9.2 / 4.6 MB    21-23 -> 10-12               5.0-6.7 -> 6.4-7.4
1, 768, 8, 14, 14      4.6 / 2.3 MB    3.7-3.9 -> 4.0-5.3           1.9-2.0 -> 1.6-1.9
8, 192, 56, 56         2.3 / 1.1 MB    11.8 -> 15.1                 8.2 -> 10.8
=====================  ==============  ===========================  ===========================

so samples of at least :data:`TRANSPOSE_MIN_BYTES` (5 MiB) are copied one 2-D transpose each: the video maps
whose depthwise backward (:mod:`vitkit.layers.depthwise`) takes channels-first copies. The other direction,
channels-first to channels-last, is within 7 % or faster by the general copy at all these sizes (the first row,
fp32: 44 ms general, 41 ms per sample; the third: 5.3 and 8.0) and stays with it.
"""
from __future__ import annotations

import math

import torch

#: bytes per sample from which a channels-last map is copied to channels-first one 2-D transpose per sample
TRANSPOSE_MIN_BYTES = 5 << 20


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
