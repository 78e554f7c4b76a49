"""One multi-head attention on ``scaled_dot_product_attention``.

Window attention (Swin), pooling attention (MViT) and global MHRA (UniFormer) all call :func:`attention`;
it adds an optional additive bias (relative position bias, shift mask) and can record the attention
probabilities for analysis (:func:`record_attention`) or run as explicit matmul + softmax (:func:`explicit_attention`),
which is numerically the same and what an exporter or a debugger wants.

Kernel choice in training on the CPU. The explicit form also runs, without being asked for, where it is the
faster one: a bf16 training step (autocast or bf16 tensors) on a CPU with bf16 units
(:func:`~vitkit.layers.cpu_features.native_bf16`), for score matrices up to :data:`EXPLICIT_MAX_SCORES` per
head. There SDPA's fused backward runs at a fraction of the matrix units' speed: one ViT-S/16 attention (batch 8,
6 heads, 197 tokens) takes 31 ms forward + backward fused and 14 ms explicit, and ViT-S's training step drops
from 0.91 to 0.73 s (Sapphire Rapids, one thread). Above the limit (MViT's first video stage: 25088 queries x 392
keys) the fused kernel wins, and it keeps less for the backward. The explicit form is the official models'
own arithmetic (bf16 scores, softmax computed in float32 inside the kernel); it keeps the probabilities for the
backward, a few MB per block at these sizes. Inference keeps SDPA. The same choice holds under ``torch.compile``
(:func:`explicit_trains_faster`).
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, ContextManager, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cpu_features import native_bf16
from .fused import is_compiling, is_tracing, linear
from .grad_reuse import overwritable
from .heads import head_views, scaled_heads, splits_dense
from .huge_pages import batched_product
from .subnormals import flush_subnormals, flushes_whole_kernel
from .switch import Switch

_state = threading.local()
_NATIVE_MHA = hasattr(torch, "_native_multi_head_attention")

#: per head, the most query x key scores for which CPU bf16 training runs attention explicitly (module doc):
#: measured faster up to 1568 x 1568 = 2.5 M, slower at 25088 x 392 = 9.8 M
EXPLICIT_MAX_SCORES = 1 << 22


def _recorder() -> list | None:
    return getattr(_state, "recorder", None)


def _explicit() -> bool:
    return getattr(_state, "explicit", False)


@contextlib.contextmanager
def record_attention() -> Iterator[list[dict[str, Any]]]:
    """Collect attention probabilities of every attention call inside the block.

    Yields a list that fills with one dict per call, in call order: ``probs`` (B, heads, Nq, Nk) on the CPU
    and whatever ``meta`` the caller passed (window layout, grid sizes).
    """
    previous = _recorder()
    records: list[dict[str, Any]] = []
    _state.recorder = records
    try:
        yield records
    finally:
        _state.recorder = previous


@contextlib.contextmanager
def explicit_attention(enabled: bool = True) -> Iterator[None]:
    """Run attention as matmul + softmax instead of the fused kernel (same numbers; for export and debugging)."""
    previous = _explicit()
    _state.explicit = enabled
    try:
        yield
    finally:
        _state.explicit = previous


def explicit_trains_faster(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether attention of ``q`` over ``k`` should run explicitly for speed: a CPU bf16 training step on a CPU
    with bf16 units, at most :data:`EXPLICIT_MAX_SCORES` scores per head (module doc); compiled too, where
    Inductor fuses the softmax and the products stay oneDNN's: a compiled ViT-S/16 bf16 step at batch 8 took 1302
    ms with SDPA and 882 ms explicit (eager: 949 ms; one Sapphire Rapids thread, CPU time, one run each)."""
    if q.device.type != "cpu" or not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)):
        return False
    bf16 = q.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return bf16 and q.shape[-2] * k.shape[-2] <= EXPLICIT_MAX_SCORES and native_bf16()


#: float32's smallest normal number: probabilities below it are subnormal (:func:`masked_softmax`)
FLOAT32_TINY = torch.finfo(torch.float32).tiny

#: dtypes whose CPU softmax computes float32 exponentials (subnormal for masked scores); float64's are not
_FLOAT32_ARITHMETIC = (torch.float32, torch.bfloat16, torch.float16)


def _depth(n: int) -> float:
    """How far below its row's maximum a score of an n-wide row may lie before ``exp`` of it, divided by the
    row's sum, can be a subnormal float32: ``-(log(tiny) + log(n) + 1)`` (80.3 for n = 392)."""
    return -(math.log(FLOAT32_TINY) + math.log(n) + 1.0)


def _floored_softmax(logits: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Softmax over the last dimension of float32 ``logits`` that makes no subnormal number on the way: each score
    is first raised to at least its row's maximum minus :func:`_depth`, so that ``exp`` of it, divided by a sum
    of at most n terms of at most 1, stays above :data:`FLOAT32_TINY`; the softmax runs in place on the raised
    scores (a copy, or ``logits`` itself with ``inplace``). Then every probability at or below ``exp(-depth)``
    (the raised scores' and any as small) is set to 0, so that the gradients of the scores, ``p (g - sum(g p))``,
    are 0 there instead of subnormal."""
    depth = _depth(logits.shape[-1])
    floor = logits.amax(-1, keepdim=True).sub_(depth)
    probs = torch.maximum(logits, floor, out=logits) if inplace else torch.maximum(logits, floor)
    torch._softmax(probs, -1, False, out=probs)
    return torch.threshold_(probs, math.exp(-depth), 0.0)


def _flushed_softmax(logits: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Softmax with its subnormal terms made 0 by the processor's flush-to-zero mode
    (:func:`~vitkit.layers.subnormals.flush_subnormals`, one thread) instead of the floor. In float32 every
    probability at or below ``exp(-depth)`` is then set to 0, which gives :func:`_floored_softmax`'s values in
    two passes over the scores instead of five. bf16 and float16 stop at the softmax: their probabilities that
    small are harmless normal numbers, bf16's products run on matrix units that flush anyway, and an in-place
    pass over large bf16 tensors is slow here (the threshold over Video Swin-T's 59 MB of stage-1 scores: 38 ms,
    against 24 for the softmax)."""
    with flush_subnormals():
        probs = torch._softmax(logits, -1, False, out=logits) if inplace else torch._softmax(logits, -1, False)
    if probs.dtype != torch.float32:
        return probs
    return torch.threshold_(probs, math.exp(-_depth(logits.shape[-1])), 0.0)


#: :func:`_compiled_floored_softmax`'s floor, one depth for every row width up to 2^24 (under dynamic shapes the
#: width can be a symbolic size): 69.7, so probabilities at or below about 5e-31 become 0, far below float32
#: rounding of a sum of 1
COMPILED_FLOOR_DEPTH = _depth(1 << 24)

#: whether masked softmaxes compiled for the CPU take :func:`_compiled_floored_softmax` (:func:`compiled_softmax_floor`)
_COMPILED_FLOOR = Switch()


def compiled_softmax_floor(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, masked softmaxes compiled for the CPU take the fused floor (``enabled``, the default) or
    plain softmax, as before (for the A/B of ``benchmarks/bench_allocator.py --setting compiled_softmax``;
    TorchDynamo guards on the setting, so each side compiles its own graph)."""
    return _COMPILED_FLOOR.set(enabled)


def _compiled_floored_softmax(logits: torch.Tensor) -> torch.Tensor:
    """:func:`_floored_softmax` for torch.compile on the CPU: the floor (detached: a score below it gets no
    gradient, as its probability is 0), the softmax and the zeroing as plain ops in float32 arithmetic, which
    Inductor fuses over each row. Inductor's softmax over Swin's masked scores made subnormal exponentials as
    eager's did (a compiled softmax with half of each 49-wide row masked, forward and backward, one thread: 71 ms
    in float32 against 13 unmasked; floored 21). An ``autograd.Function`` with softmax's own backward was faster
    still (15 ms), but TorchDynamo cannot trace one over symbolic sizes (``dynamic=True``). Whole compiled steps,
    plain / floored (``benchmarks/bench_allocator.py --setting compiled_softmax``): float32 Swin-T 1.14x, Video
    Swin-T at 8x128 1.07x; bf16 (the same floor in float32 arithmetic) Swin-T 1.04x [0.99-1.11], Video Swin-T
    0.96x [0.95-1.01], so compiled bf16 keeps plain softmax."""
    scores = logits.float()
    probs = torch.maximum(scores, scores.detach().amax(-1, keepdim=True) - COMPILED_FLOOR_DEPTH).softmax(-1)
    return torch.where(probs <= math.exp(-COMPILED_FLOOR_DEPTH), 0.0, probs).to(logits.dtype)


# explicit schemas: torch before 2.5 cannot infer one from this module's postponed (string) annotations
@torch.library.custom_op("vitkit::masked_softmax", mutates_args=(), schema="(Tensor logits) -> Tensor")
def _compiled_flushed_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Compiled bf16 training's masked softmax: eager's kernel with the processor flushing subnormals around it
    where one thread runs it (:func:`_flushed_softmax`), plain softmax where more do."""
    with torch.no_grad():
        return _softmax_values(logits, "flush" if flushes_whole_kernel(logits) else None, False)


@_compiled_flushed_softmax.register_fake
def _(logits):
    return torch.empty_like(logits)


@torch.library.custom_op("vitkit::masked_softmax_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor probs) -> Tensor")
def _compiled_flushed_softmax_backward(grad: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return _softmax_grad(grad, probs, flush=True)


@_compiled_flushed_softmax_backward.register_fake
def _(grad, probs):
    return torch.empty_like(probs)


def _flushed_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(output)


def _flushed_backward(ctx, grad):
    probs, = ctx.saved_tensors
    return _compiled_flushed_softmax_backward(grad, probs)


_compiled_flushed_softmax.register_autograd(_flushed_backward, setup_context=_flushed_setup)


@torch._dynamo.assume_constant_result
def _one_flushing_thread() -> bool:
    """:func:`flushes_whole_kernel` for a CPU tensor, as TorchDynamo sees it while tracing: a constant of the graph
    (it cannot trace ``torch.get_num_threads``); the operator itself checks again when it runs."""
    return flushes_whole_kernel(torch.empty(0))


#: whether masked bf16 softmaxes compiled for CPU training take ``vitkit::masked_softmax`` (:func:`compiled_softmax_flush`)
_COMPILED_FLUSH = Switch()


def compiled_softmax_flush(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, masked bf16 softmaxes compiled for CPU training with one thread take
    ``vitkit::masked_softmax`` (``enabled``, the default) or Inductor's plain softmax (for the A/B of
    ``benchmarks/bench_allocator.py --setting compiled_flush``; TorchDynamo guards on the setting)."""
    return _COMPILED_FLUSH.set(enabled)


def _subnormal_guard(logits: torch.Tensor) -> str | None:
    """How a softmax over masked ``logits`` keeps subnormal numbers out: ``"flush"`` (CPU, one intra-op thread:
    :func:`_flushed_softmax`), ``"floor"`` (CPU float32 with more threads: :func:`_floored_softmax`; the floor's
    extra passes cost more than bf16's slow exponentials save, so bf16 runs plain there), ``"compiled"`` (CPU float32
    under torch.compile: :func:`_compiled_floored_softmax`), ``"compiled flush"`` (CPU bf16 training under
    torch.compile with one thread: ``vitkit::masked_softmax``), or None (plain softmax: other devices and dtypes,
    bf16 compiled otherwise, torch.export and TorchScript)."""
    if logits.device.type != "cpu" or logits.dtype not in _FLOAT32_ARITHMETIC:
        return None
    if is_tracing():
        if not is_compiling():
            return None
        if logits.dtype == torch.float32:
            return "compiled" if _COMPILED_FLOOR.on else None
        return "compiled flush" if _COMPILED_FLUSH.on and torch.is_grad_enabled() and _one_flushing_thread() else None
    if flushes_whole_kernel(logits):
        return "flush"
    return "floor" if logits.dtype == torch.float32 else None


def _softmax_grad(grad: torch.Tensor, probs: torch.Tensor, flush: bool, over_grad: bool = False) -> torch.Tensor:
    """The scores' gradient of a softmax from its output gradient and probabilities, with the processor flushing
    subnormals where ``flush`` and one thread runs the kernel; written over ``grad`` with ``over_grad``."""
    with flush_subnormals() if flush and flushes_whole_kernel(probs) else contextlib.nullcontext():
        if over_grad:
            return torch.ops.aten._softmax_backward_data.out(grad, probs, -1, probs.dtype, grad_input=grad)
        return torch._softmax_backward_data(grad, probs, -1, probs.dtype)


def _softmax_values(logits: torch.Tensor, guard: str | None, inplace: bool) -> torch.Tensor:
    """Softmax over the last dimension with ``guard`` (:func:`_subnormal_guard`) or plain, written over ``logits``
    or into a new tensor."""
    if guard == "flush":
        return _flushed_softmax(logits, inplace)
    if guard == "floor":
        return _floored_softmax(logits, inplace)
    return torch._softmax(logits, -1, False, out=logits) if inplace else logits.softmax(-1)


class _Softmax(torch.autograd.Function):
    """:func:`_softmax_values` with softmax's gradient taken at its outputs (so the backward's products see no
    subnormals either when guarded; with ``"flush"`` the backward's own kernel flushes too); ``inplace`` marks
    ``logits`` as overwritten and writes the scores' gradient over the probabilities' where that is a dense tensor
    of their shape and dtype (and no graph of the backward is being built)."""

    @staticmethod
    def forward(ctx, logits, guard, inplace):  # noqa: D401 - autograd signature
        probs = _softmax_values(logits, guard, inplace)
        if inplace:
            ctx.mark_dirty(logits)
        ctx.save_for_backward(probs)
        ctx.inplace, ctx.flush = inplace, guard == "flush"
        return probs

    @staticmethod
    def backward(ctx, grad):
        probs, = ctx.saved_tensors
        return _softmax_grad(grad, probs, ctx.flush, ctx.inplace and overwritable(grad, probs)), None, None


def masked_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.softmax(-1)`` for scores that carry an additive mask, without subnormal float32 numbers.

    Swin's shift mask is -100 (the official value, kept: it is not -inf, so very large scores can still leak
    through it as in the official code); a masked probability is then about exp(-100) = 4e-44, a subnormal
    float32 number. x86 cores take a slow microcode path for every operation that makes or reads a subnormal
    number: the exponentials inside the softmax (in a microbenchmark with half of each 392-wide row masked, the
    softmax took 2.7x as long as unmasked; ``exp`` alone over such scores 12x; bf16 scores alike, since the
    kernel's arithmetic is float32: 16.9 vs 8.6 ms), and with 4 % of the probabilities of a shifted block
    subnormal, the products with them (probs v, and in the backward probs^T dout, dscores k and dscores^T q) ran
    5-20x slower than on normal numbers, 15 % of a Swin-T fp32 training step (one Sapphire Rapids thread). Here
    the exponentials stay fast, by the processor's flush-to-zero mode around the kernel where one thread runs it
    (:func:`_flushed_softmax`) or, in float32 with more threads, by raising every score to at least its row's
    maximum minus about 80 (:func:`_floored_softmax`). In float32 the probabilities at about 1e-35 or below are
    then set to 0, as a GPU's or AMX's flush-to-zero arithmetic would make them: each changes an output of
    probabilities summing to 1 far below float32 rounding, so outputs and gradients agree with plain softmax to
    float32 rounding. bf16 probabilities are plain softmax's bit for bit, except those below float32's smallest
    normal number, which are 0. Flushing in the backward as well keeps the scores' gradient free of subnormals,
    and with it the products that read it. Measured (Sapphire Rapids, one thread, alternating in one process,
    ``benchmarks/bench_allocator.py --setting subnormals``, 5 and 7 rounds): Video Swin-T's training step at one
    16x224 clip 1.10x in bf16 (softmax 296 -> 118 ms per step) and 1.02-1.03x in fp32 against the floor; Swin-T
    bf16 1.00-1.04x (softmax 60 -> 35 ms), fp32 unchanged.
    (Swin's masked blocks mask 12-43 % of their scores; at none, the floor costs about 10 % more than plain
    softmax, so only masked scores take a guard.) Under torch.compile on the CPU float32 takes the floor as fused
    ops (:func:`_compiled_floored_softmax`), and bf16 training with one thread eager's flushed kernels as an
    operator Inductor does not look into (``vitkit::masked_softmax``). bf16 with more than one thread, compiled
    bf16 inference, float64, other devices, torch.export and TorchScript run plain softmax.
    """
    guard = _subnormal_guard(logits)
    if guard is None:
        return logits.softmax(dim=-1)
    if guard == "compiled":
        return _compiled_floored_softmax(logits)
    if guard == "compiled flush":
        return torch.ops.vitkit.masked_softmax(logits)
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return _softmax_values(logits, guard, False)
    return _Softmax.apply(logits, guard, False)


def softmax_over_scores(logits: torch.Tensor, masked: bool) -> torch.Tensor:
    """Softmax over the last dimension of attention scores that nothing else holds (:func:`attention`'s own),
    written over them on the CPU, and in the backward the scores' gradient written over the probabilities': each
    takes the memory of the tensor it replaces instead of a new one (fresh pages for every tensor above malloc's
    mmap threshold: a plain softmax over 29.5 M float32 scores took 122 ms into a new tensor and 45 ms in place, one
    Sapphire Rapids thread); while it runs, one scores-sized tensor is alive instead of two (a training step's peak
    lies elsewhere and stays as it was). So the probabilities must feed only a product whose backward makes their
    gradient a new tensor (``probs @ v``, dropout), never a tensor the caller keeps. ``masked`` scores take
    :func:`masked_softmax`'s guard against subnormals. Values and gradients are plain softmax's (masked:
    :func:`masked_softmax`'s). Elsewhere, and while tracing, the functional forms run."""
    if logits.device.type != "cpu" or is_tracing():
        return masked_softmax(logits) if masked else logits.softmax(dim=-1)
    guard = _subnormal_guard(logits) if masked else None
    if torch.is_grad_enabled() and logits.requires_grad:
        return _Softmax.apply(logits, guard, True)
    return _softmax_values(logits, guard, True)


def runs_explicitly(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether :func:`attention` of ``q`` over ``k`` with ``bias`` runs its explicit form (products and softmax)
    rather than SDPA: when recording or asked to (:func:`explicit_attention`), with a trainable bias on the CPU
    (SDPA cannot take a bias that needs a gradient, such as Swin's relative position bias in training, into its
    fused kernel; its fallback is the same arithmetic plus NaN guards for fully masked rows, all / where /
    isneginf: 5 % of a Video Swin-T training step, which the explicit form skips), or where it trains faster
    (:func:`explicit_trains_faster`)."""
    trainable_bias = bias is not None and bias.requires_grad and q.device.type == "cpu"
    return _recorder() is not None or _explicit() or trainable_bias or explicit_trains_faster(q, k)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    meta: dict[str, Any] | None = None,
    mask: torch.Tensor | None = None,
    q_scaled: bool = False,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias + mask) v for (B, heads, N, D) tensors; ``bias`` broadcasts to
    (B, heads, Nq, Nk). ``q_scaled``: ``q`` is the query already multiplied by ``scale`` (as
    :func:`~vitkit.layers.heads.scaled_heads` makes it where :func:`runs_explicitly` holds): the explicit form
    runs, without scaling it again.

    ``mask`` (M, Nq, Nk), without gradient, is an additive mask for a batch of M-long groups: batch entry
    ``g * M + m`` takes ``mask[m]`` for every head (Swin's shifted windows, M windows per image). The explicit
    form adds bias and mask to the scores in place, one after the other, as the official Swin code does, so no
    (B, heads, Nq, Nk) bias-plus-mask tensor is built, cast or reduced in the backward (Video Swin-T's bf16
    training step: 3 such tensors of 30-118 MB per shifted block).
    """
    recorder = _recorder()
    if not q_scaled and not runs_explicitly(q, k, bias):
        if mask is not None:
            groups = mask.to(q.dtype).unsqueeze(1).expand(q.shape[0] // mask.shape[0], -1, -1, -1, -1)
            groups = groups.reshape(q.shape[0], 1, *mask.shape[1:])
            bias = groups if bias is None else bias.to(q.dtype) + groups
        if bias is not None and bias.dtype != q.dtype:
            bias = bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    batch = q.shape[0]
    if mask is not None:  # (groups, M, heads, N, D): the mask broadcasts over groups and heads
        q, k, v = (t.reshape(-1, mask.shape[0], *t.shape[1:]) for t in (q, k, v))
        if bias is not None and bias.dim() == 4 and bias.shape[0] == batch > 1:
            bias = bias.reshape(q.shape[:2] + bias.shape[1:])
    # a new tensor (on huge pages where large): the additions and the softmax below go in place
    logits = batched_product(q if q_scaled else q * scale, k.transpose(-2, -1))
    if bias is not None:
        logits.add_(bias.to(logits.dtype))
    if mask is not None:
        logits.add_(mask.to(logits.dtype).unsqueeze(1))
    probs = softmax_over_scores(logits, masked=mask is not None)
    if recorder is not None:
        recorded = probs if mask is None else probs.flatten(0, 1)
        recorder.append({"probs": recorded.detach().float().cpu(), **(meta or {})})
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p)
    out = batched_product(probs, v)  # its backward makes the probabilities' gradient on huge pages too
    return out if mask is None else out.flatten(0, 1)


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C) with a fused ``qkv`` projection.

    ``dim_out`` lets the output width differ from the input (MViTv2-style channel expansion in attention).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dim_out: int | None = None,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        dim_out = dim_out or dim
        if head_dim is None:
            if dim_out % num_heads:
                raise ValueError(f"attention width {dim_out} is not divisible by {num_heads} heads")
            head_dim = dim_out // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(num_heads * head_dim, dim_out)
        self.proj_drop = nn.Dropout(proj_drop)

    def _native_ok(self, x: torch.Tensor) -> bool:
        """Whether the native fused MHA kernel computes exactly this module's forward for ``x``."""
        return (
            _NATIVE_MHA
            and type(self.qkv) is type(self.proj) is nn.Linear  # not an adapter in their place (its own call)
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and self.qkv.bias is not None
            and self.proj.in_features == self.proj.out_features == x.shape[-1] == self.num_heads * self.head_dim
            and self.scale == self.head_dim**-0.5
            and _recorder() is None
            and not _explicit()
            and not is_tracing()
        )

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, C) -> q, k, v each (B, heads, N, head_dim)."""
        return head_views(linear(x, self.qkv), self.num_heads, self.head_dim)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor | None = None, meta: dict | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`attention` over the heads of the projection ``qkv`` (B, N, 3 * heads * head_dim) -> (B, heads,
        N, head_dim). In a CPU training step whose attention runs explicitly, q, k and v are dense tensors with
        q scaled, from :func:`~vitkit.layers.heads.scaled_heads` (same values and gradients, less copying)."""
        q, k, v = head_views(qkv, self.num_heads, self.head_dim)
        scaled = splits_dense(qkv) and runs_explicitly(q, k, bias)
        if scaled:
            q, k, v = scaled_heads(qkv, self.num_heads, self.head_dim, self.scale)
        drop = self.attn_drop if self.training else 0.0
        return attention(q, k, v, bias, drop, self.scale, meta, mask=mask, q_scaled=scaled)

    def merge_heads(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """(B, heads, N, head_dim) -> projected (B, N, dim_out); plus ``residual`` if given."""
        B, _, N, _ = x.shape
        x = x.transpose(1, 2).reshape(B, N, -1)
        if self.proj_drop.p == 0.0 or not self.training:
            return linear(x, self.proj, residual=residual)
        y = self.proj_drop(self.proj(x))
        return y if residual is None else residual + y

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        meta: dict | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention of ``x`` (B, N, C); with ``residual``, returns ``residual + attn(x)``."""
        if bias is None and self._native_ok(x):
            # PyTorch's native MHA kernel (nn.MultiheadAttention's inference fast path): qkv projection,
            # attention and output projection in one call, a few per cent faster on the CPU than three ops
            out = torch._native_multi_head_attention(
                x, x, x, self.num_heads * self.head_dim, self.num_heads, self.qkv.weight, self.qkv.bias,
                self.proj.weight, self.proj.bias, None, False,
            )[0]
            return out if residual is None else residual + out
        return self.merge_heads(self.attend(linear(x, self.qkv), bias, meta), residual)
