"""q, k and v of a fused qkv projection as dense per-head tensors, the query already scaled, for attention's
explicit form in a CPU training step.

The official models (and timm, torchvision) split a qkv projection's (B, N, 3 * heads * head_dim) output into
three strided views (B, heads, N, head_dim) and scale the query (``q * scale``). The explicit attention then
copies k and v dense for its products, and autograd's backward stacks the three gradients into one tensor and
copies that into the projection's (B, N, 3, heads, head_dim) layout: two passes over the gradient, plus one for
the query's ``* scale``. :func:`scaled_heads` makes the same three dense tensors in its forward (the query's copy
scaled on the way) and writes the three gradients straight into the projection's layout in its backward (the
query's scaled on the way): one pass. Values and gradients are bit for bit those of the views and ``q * scale``
(the same multiplication of the same numbers, in float32 or bf16), tested on every family that uses it.

One Sapphire Rapids thread, CPU time, batch 8 at 224 (2026-12-05): in a per-op profile (fastest of 4 alternating
runs) Swin-T's step loses its ``cat`` (28 ms fp32, 15 ms bf16) and sums 2454 -> 2435 ms fp32, 1254 -> 1244 ms bf16;
ViT-B/16 bf16 2686 -> 2622 ms. Timed in one process, alternating (``bench_allocator.py --setting dense_heads``, 7
rounds, ``benchmarks/results/dense_heads_amx.json``): ViT-S/16 bf16 1.05x [1.02-1.10], ViT-B/16 bf16 1.02x, Swin-T
fp32 1.02x, bf16 1.00x, UniFormer-S bf16 1.00x, Video Swin-T 16x224 fp32 1.00x, bf16 1.07x [0.95-1.15], where the
pairs it does not change read 1.01-1.03x: about one per cent, at the edge of what the machine resolves.

It is used only where attention runs its explicit form (:func:`vitkit.layers.attention.runs_explicitly`) in a CPU
training step, not while tracing (compiled graphs and exports keep the plain views; Inductor lays out its own
copies) and not on other devices.
"""
from __future__ import annotations

from typing import ContextManager

import torch

from .fused import is_tracing
from .switch import Switch

_DENSE_HEADS = Switch()


def dense_heads(enabled: bool = True) -> ContextManager[None]:
    """Turn :func:`scaled_heads` on or off inside the block (for A/B measurements; on by default)."""
    return _DENSE_HEADS.set(enabled)


def splits_dense(qkv: torch.Tensor) -> bool:
    """Whether a training step's (B, N, 3 * heads * head_dim) projection ``qkv`` goes through :func:`scaled_heads`
    (if its attention runs explicitly): on, a CPU tensor that needs a gradient, dense, not traced."""
    return (_DENSE_HEADS.on and qkv.device.type == "cpu" and torch.is_grad_enabled() and qkv.requires_grad
            and qkv.dim() == 3 and qkv.is_contiguous() and not is_tracing())


def head_views(qkv: torch.Tensor, heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, 3 * heads * head_dim) -> q, k, v, each a (B, heads, N, head_dim) view (the official split)."""
    B, N, _ = qkv.shape
    return qkv.reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


def scaled_heads(qkv: torch.Tensor, heads: int, head_dim: int,
                 scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q * scale, k, v`` of :func:`head_views`, each a new dense (B, heads, N, head_dim) tensor, with the
    backward of module doc (one pass into the projection's layout)."""
    return _ScaledHeads.apply(qkv, heads, head_dim, scale)


class _ScaledHeads(torch.autograd.Function):
    """:func:`scaled_heads`; nothing is saved for the backward."""

    @staticmethod
    def forward(ctx, qkv, heads, head_dim, scale):  # noqa: D401 - autograd signature
        B, N, _ = qkv.shape
        q_view, k_view, v_view = head_views(qkv, heads, head_dim)
        q = qkv.new_empty((B, heads, N, head_dim))
        torch.mul(q_view, scale, out=q)
        k, v = torch.empty_like(q), torch.empty_like(q)
        k.copy_(k_view)
        v.copy_(v_view)
        ctx.scale, ctx.shape = scale, (B, N, heads, head_dim)
        return q, k, v

    @staticmethod
    def backward(ctx, grad_q, grad_k, grad_v):
        B, N, heads, head_dim = ctx.shape
        if torch.is_grad_enabled():  # create_graph: a differentiable gradient (no out=)
            parts = torch.stack((grad_q * ctx.scale, grad_k, grad_v))
            return parts.permute(1, 3, 0, 2, 4).reshape(B, N, 3 * heads * head_dim), None, None, None
        grad = grad_q.new_empty((B, N, 3, heads, head_dim))
        torch.mul(grad_q.transpose(1, 2), ctx.scale, out=grad[:, :, 0])
        grad[:, :, 1].copy_(grad_k.transpose(1, 2))
        grad[:, :, 2].copy_(grad_v.transpose(1, 2))
        return grad.view(B, N, 3 * heads * head_dim), None, None, None
