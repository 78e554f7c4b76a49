"""Backward passes that write their gradient over the incoming one instead of into a new tensor.

A gradient the size of an activation is a new tensor in every backward; above malloc's mmap threshold each is
fresh pages from the kernel, a page fault and a zero-fill per 4 KiB (with glibc's defaults: ``vitkit train``
keeps freed memory instead, see :mod:`vitkit.engine.allocator`). Where an op's output feeds only a product of
vitkit's own whose backward makes a new gradient tensor (attention's probabilities ``probs @ v``, an MLP's GELU
before ``fc2``), that gradient is nobody else's and the op's input gradient can take its memory: same kernel,
same values. :func:`overwritable` says when; :func:`gelu_before_product` is the MLP's GELU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .fused import is_tracing


def overwritable(grad: torch.Tensor, like: torch.Tensor) -> bool:
    """True when ``grad`` may take an input gradient of ``like``'s shape and dtype in its place: dense, of that
    shape and dtype, and no graph of the backward is being built (``create_graph``: it would need ``grad``)."""
    return (not torch.is_grad_enabled() and grad.is_contiguous() and grad.shape == like.shape
            and grad.dtype == like.dtype)


class _Gelu(torch.autograd.Function):
    """Exact GELU whose backward writes the input's gradient over the output's where :func:`overwritable`."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401 - autograd signature
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if overwritable(grad, x):
            return torch.ops.aten.gelu_backward.grad_input(grad, x, approximate="none", grad_input=grad)
        return torch.ops.aten.gelu_backward(grad, x, approximate="none")


def gelu_before_product(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x)`` (exact) for an activation that feeds only a product whose backward makes its gradient a new
    tensor (an MLP's ``fc2``): on the CPU with autograd, the backward writes over that gradient (a Swin-T fp32
    training step at batch 8: 26 K page faults fewer). Values and gradients are ``F.gelu``'s, bit for bit."""
    if x.device.type == "cpu" and torch.is_grad_enabled() and x.requires_grad and not is_tracing():
        return _Gelu.apply(x)
    return F.gelu(x)
