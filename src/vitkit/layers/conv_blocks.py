"""Convolutional building blocks of any spatial rank: depthwise convolutions and the overlapping conv stem.

The rank (2 for images, 3 for video) is an argument, so the image and video variant of a family share one
implementation.
"""
from __future__ import annotations

from typing import ContextManager, Sequence

import torch
import torch.nn as nn

from .depthwise import conv_float32_grads, float32_fast_backward, float32_on_this_device
from .fused import is_tracing, projection
from .nd import batchnorm_nd, conv_nd, to_tuple
from .switch import Switch


#: input elements per chunk of :class:`_Float32OnCpu`'s float32 backward: 16 MB per float32 copy, a whole batch
#: of 8 UniFormer-S images (1.6 M elements at stage 1), two 16x224 clips
BLOCK_CHUNK_ELEMENTS = 1 << 22
#: whether :class:`_Float32OnCpu` uses :data:`BLOCK_CHUNK_ELEMENTS` (:func:`large_backward_chunks`)
_LARGE_CHUNKS = Switch()


def large_backward_chunks(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, the float32 backward of these depthwise convolutions runs in chunks of
    :data:`BLOCK_CHUNK_ELEMENTS` (the default) or, with ``enabled=False``, of
    :data:`~vitkit.layers.depthwise.BACKWARD_CHUNK_ELEMENTS` as MViT's pooling does; an off switch and the
    benchmarks' A/B (``bench_allocator.py --setting dw_batch``)."""
    return _LARGE_CHUNKS.set(enabled)


class _Float32OnCpu:
    """Forward of a depthwise convolution in reduced precision on the CPU with float32 gradients, and a float32
    forward where reduced precision is slow (see :func:`~vitkit.layers.depthwise.float32_on_this_device`); it
    returns the dtype autocast would have. Float32 training on channels-last clips, and on channels-last maps
    with 5x5 filters, takes the same function for its faster backward
    (:func:`~vitkit.layers.depthwise.float32_fast_backward`).

    The backward's float32 copies cover :data:`BLOCK_CHUNK_ELEMENTS` at once (:func:`large_backward_chunks`),
    16 times MViT's pooling's: UniFormer's training peak is the same as in the smaller chunks (bf16 / fp32:
    UniFormer-S at batch 8 445.8 / 865.8 MB with chunks of 2^18 elements up to the whole batch, at batch 16
    850.8 / 1652.1 MB; UniFormer-S 16x4 at two clips 1205.1 / 1653.8 MB), and the backward is faster (bf16,
    batch 8, one thread: the 5x5 at 64x56x56 23.1 -> 15.8 ms, at 128x28x28 13.1 -> 9.0 ms; the 3x3 at 64x56x56
    9.9 -> 5.9 ms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (float32_on_this_device(x) or float32_fast_backward(x, self.weight, self.stride)):  # type: ignore[attr-defined]
            return super().forward(x)  # type: ignore[misc]
        return conv_float32_grads(x, self.weight, self.bias, self.stride, self.padding, self.groups,  # type: ignore[attr-defined]
                                  chunk_elements=BLOCK_CHUNK_ELEMENTS if _LARGE_CHUNKS.on else None)


class DepthwiseConv2d(_Float32OnCpu, nn.Conv2d):
    """``nn.Conv2d`` with ``groups = channels``, float32 gradients on the CPU in reduced precision (same
    parameters)."""


class DepthwiseConv3d(_Float32OnCpu, nn.Conv3d):
    """``nn.Conv3d`` with ``groups = channels``, float32 gradients on the CPU in reduced precision (same
    parameters)."""


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 ``nn.Conv3d`` (same parameters and keys) that runs as a matrix product over the channels of a
    channels-last clip and keeps it channels-last. PyTorch's CPU ``conv3d`` takes 2-5x longer for it in float32
    (UniFormer-S 16x4's 64 -> 256 channels at 8x56x56: 89 vs 48 ms forward + backward; 256 -> 64: 185 vs 35 ms)
    and returns a channels-first map, on which the depthwise convolution after it runs 2x slower."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and x.movedim(1, -1).is_contiguous():
            return projection(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)
        return super().forward(x)


#: whether :class:`PointwiseConv2d` runs as a product in float32 CPU training (:func:`pointwise_products`)
_POINTWISE_PRODUCTS = Switch()


def pointwise_products(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, :class:`PointwiseConv2d` takes the product where it applies (``enabled``, the default) or
    always the convolution (for the A/B of ``benchmarks/bench_allocator.py --setting pointwise2d``)."""
    return _POINTWISE_PRODUCTS.set(enabled)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and keys) that, in float32 training on a channels-last map, runs as
    the training linear over the map's channels (:func:`~vitkit.layers.fused.projection`), output channels-last.

    There oneDNN's convolution took 1.06-1.45x the time of the linear, forward + backward (one Sapphire Rapids
    thread, median of 9 twice, batch 8, ms: UniFormer-S's 64 -> 256 at 56x56 45.7 / 36.5, 256 -> 64 47.4 / 32.7,
    64 -> 64 11.8 / 9.5; 128 -> 512 at 28x28 29.3 / 24.3, 512 -> 128 27.2 / 25.5, 128 -> 128 7.5 / 7.0; with two
    threads the linear still wins at 56x56 and loses at 28x28, and UniFormer-S's whole step is level). Under
    bf16 autocast the convolution was as fast or faster at most of these shapes (0.75-1.01x, one 1.47x), and at
    inference it is fused with its neighbours elsewhere (:class:`~vitkit.layers.mlp.Mlp`): both keep the
    convolution, as do traced graphs (torch.compile and torch.export see the convolution they were measured
    with) and other devices (on CUDA cuDNN's convolution may use TF32 where a float32 product would not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (_POINTWISE_PRODUCTS.on and x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
                and torch.is_grad_enabled() and not is_tracing() and not torch.is_autocast_enabled("cpu")
                and x.movedim(1, -1).is_contiguous()):
            return projection(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)
        return super().forward(x)


def pointwise_conv(rank: int, in_chans: int, out_chans: int, bias: bool = True) -> nn.Module:
    """A 1x1 convolution on (B, C, *grid): :class:`PointwiseConv3d` for clips, :class:`PointwiseConv2d` for
    images, ``nn.Conv1d`` otherwise."""
    if rank == 3:
        return PointwiseConv3d(in_chans, out_chans, 1, bias=bias)
    if rank == 2:
        return PointwiseConv2d(in_chans, out_chans, 1, bias=bias)
    return conv_nd(rank, in_chans, out_chans, 1, bias=bias)


def depthwise_conv(rank: int, dim: int, kernel_size: int | Sequence[int], bias: bool = True) -> nn.Module:
    """A ``kernel_size`` depthwise convolution with 'same' zero padding (odd kernels), on (B, dim, *grid)."""
    k = to_tuple(kernel_size, rank)
    if any(s % 2 == 0 for s in k):
        raise ValueError(f"depthwise_conv needs odd kernel sizes for 'same' padding, got {k}")
    if rank not in (2, 3):
        return conv_nd(rank, dim, dim, k, padding=tuple(s // 2 for s in k), groups=dim, bias=bias)
    cls = DepthwiseConv2d if rank == 2 else DepthwiseConv3d
    return cls(dim, dim, k, padding=tuple(s // 2 for s in k), groups=dim, bias=bias)


class ConvStem(nn.Module):
    """Overlapping convolutional embedding: ``n`` stride-2 3x3 convolutions with BatchNorm (GELU between them).

    With ``n=2`` and ``hidden = out // 2``: ``conv(in -> out/2) - BN - GELU - conv(out/2 -> out) - BN``, an
    overall stride of 4 (UniFormer's S-dagger stem); with ``n=1``: ``conv - BN``, a stride-2 downsampler. The
    layers sit in ``proj`` (indices 0, 1, 3, 4 for two convolutions) as in the official checkpoints.
    """

    def __init__(self, in_chans: int, out_chans: int, rank: int = 2, n: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        if n not in (1, 2):
            raise ValueError(f"ConvStem supports 1 or 2 convolutions, got {n}")
        self.rank = rank
        self.in_chans = in_chans
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        widths = [in_chans, out_chans // 2, out_chans] if n == 2 else [in_chans, out_chans]
        for i in range(n):
            layers.append(conv_nd(rank, widths[i], widths[i + 1], kernel_size, 2, pad))
            layers.append(batchnorm_nd(rank, widths[i + 1]))
            if i < n - 1:
                layers.append(nn.GELU())
        self.proj = nn.Sequential(*layers)
        self.stride = (2**n,) * rank

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        out = tuple(size)
        for m in self.proj:
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                out = tuple((s + 2 * p - k) // st + 1 for s, p, k, st in zip(out, m.padding, m.kernel_size, m.stride))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)
