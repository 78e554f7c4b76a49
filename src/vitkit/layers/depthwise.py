"""Depthwise 3-D convolution (one filter per channel, no bias) with a fast CPU backward on channels-last clips.

MViT pools its queries, keys and values with depthwise 3x3x3 convolutions on channels-last maps, where
oneDNN's forward is fast but PyTorch's CPU backward is slow: at MViT-B's first stage (96 channels, 8x56x56,
stride 1x8x8) the forward takes 2 ms and the backward over 1 s at batch 2, 13 % of a whole training step.
Measured per part (``benchmarks/bench_train.py --profile`` shows the effect on a whole step), the backward
is fastest as:

* the weight gradient tap by tap: for each of the filter's 27 taps, the output gradient times a strided view of
  the padded input, summed over positions, a few frames at a time so each product stays in cache. PyTorch's own
  kernel (on contiguous (N, C, T, H, W) copies, 4-20x faster than on channels-last tensors) took 45 ms at MViT-B's
  768 channels, 8x14x14, stride 1x2x2, forward 1.6 ms; tap by tap it is 5-10 ms;
* the input gradient by the fast channels-last *forward* kernel with the filter mirrored: directly for stride 1
  (the adjoint of a stride-1 correlation with the symmetric ``kernel // 2`` padding used here), and for strides
  up to 2 on the output gradient spread over the input grid with zeros between (the transposed convolution);
  at the 1x2x2 case above 3 ms against 16 ms for PyTorch's kernel. At strides of 4 and 8 (MViT's first key and
  value pooling) the spread map is mostly zeros and PyTorch's kernel, on contiguous copies
  (:func:`vitkit.layers.layout.channels_first`, one 2-D transpose per sample), stays the faster.

Results equal PyTorch's backward to float32 rounding. On 2-D maps aten's backward is fast for 3x3 filters
(MViTv2's image pooling); 5x5 ones (UniFormer's image blocks) get their weight gradient from four 3x3 ones
(:func:`_depthwise_cl2d_grads`). The GPU, no gradient, tracing and other layouts take plain ``F.conv2d`` /
``F.conv3d``, except compiled training (:func:`compiling_for_training`): there the same forward and backward run
as two operators that TorchDynamo and Inductor treat as opaque (``vitkit::conv_float32_grads`` and its backward),
so a compiled step runs eager's kernels, with eager's results bit for bit.

On CUDA a channels-last 3-D map is made contiguous first (:func:`gpu_depthwise_input`): PyTorch sends a
channels-last depthwise 3-D convolution to cuDNN, whose grouped direct kernels took 4.3 ms (19 calls) and its
layout transforms 1.4 ms of MViT-B's 11 ms bf16 inference forward (batch 4, H200, ``benchmarks/gpu_probe.py``),
where torchvision's contiguous maps take PyTorch's own depthwise 3-D kernel: 0.94 ms over its 35 calls. Not
yet measured on a GPU after the change (no second lease): ``benchmarks/gpu.py`` will show it.

In reduced precision on the CPU (bf16 / fp16 maps or autocast), the depthwise convolutions of MViT's pooling
and UniFormer's blocks go through :func:`conv_float32_grads`: gradients in float32, which the CPU computes
several times faster than in bf16, without keeping a float32 copy of the input (:func:`float32_on_this_device`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ContextManager, Sequence

import torch
import torch.nn.functional as F

from .cpu_features import native_bf16
from .fused import is_compiling, is_tracing
from .layout import channels_first
from .switch import Switch


#: the weight gradient of :func:`_depthwise_cl3d_grads` runs over chunks of output frames holding about this many
#: output-gradient elements (512 KB in float32), so that each tap's product and sum stay in the core's cache
WEIGHT_GRAD_CHUNK_ELEMENTS = 1 << 17


def _depthwise_cl3d_weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel: tuple[int, ...],
                                stride: tuple[int, ...], padding: tuple[int, ...]) -> torch.Tensor:
    """(C, 1, *kernel) weight gradient of a depthwise 3-D convolution from channels-last ``grad`` and ``x``: for each
    filter tap, the sum over output positions of the output gradient times the input under that tap (a strided
    view of the padded input, channels contiguous), a few output frames at a time; the chunks' sums are added
    in float32."""
    gl = grad.permute(0, 2, 3, 4, 1)  # (N, T', H', W', C), contiguous
    pt, ph, pw = padding
    xl = F.pad(x.permute(0, 2, 3, 4, 1), (0, 0, pw, pw, ph, ph, pt, pt))
    n_frames, rows, cols, channels = gl.shape[1:]
    st, sh, sw = stride
    kt, kh, kw = kernel
    frames = max(1, WEIGHT_GRAD_CHUNK_ELEMENTS // (rows * cols * channels))
    chunks = [(n, t0) for n in range(gl.shape[0]) for t0 in range(0, n_frames, frames)]
    # per chunk and tap, a (C,) sum: written straight into the result when there is one chunk, else added up
    sums = torch.empty(len(chunks), kt * kh * kw, channels, dtype=grad.dtype, device=grad.device)
    product = torch.empty(0, dtype=grad.dtype, device=grad.device)
    for i, (n, t0) in enumerate(chunks):
        g = gl[n, t0:t0 + frames]
        span = g.shape[0]
        if product.shape != g.shape:
            product = torch.empty_like(g)
        tap = 0
        for a in range(kt):
            xa = xl[n, a + t0 * st:a + (t0 + span - 1) * st + 1:st]
            for b in range(kh):
                xb = xa[:, b:b + (rows - 1) * sh + 1:sh]
                for c in range(kw):
                    torch.mul(g, xb[:, :, c:c + (cols - 1) * sw + 1:sw], out=product)
                    torch.sum(product, (0, 1, 2), out=sums[i, tap])
                    tap += 1
    out = sums[0] if len(chunks) == 1 else sums.sum(0, dtype=torch.float32)
    return out.t().reshape(channels, 1, kt, kh, kw).to(grad.dtype)


def _depthwise_cl3d_input_grad(grad: torch.Tensor, weight: torch.Tensor, in_grid: tuple[int, ...],
                               stride: tuple[int, ...], padding: tuple[int, ...]) -> torch.Tensor:
    """Channels-last input gradient of a depthwise 3-D convolution by the fast channels-last forward kernel: the
    output gradient spread onto the input's grid at the stride (zeros between, the transposed convolution's
    dilated input) and correlated with the mirrored filter. Stride 1 needs no spreading when the padding is
    symmetric about the filter's centre."""
    kernel = tuple(weight.shape[2:])
    groups = weight.shape[0]
    if all(s == 1 for s in stride) and all(2 * p == k - 1 for p, k in zip(padding, kernel)):
        return F.conv3d(grad, weight.flip([2, 3, 4]), None, 1, padding, 1, groups)
    n, c = grad.shape[:2]
    # (N, *(in + k - 1), C): left pad k - 1 - p, the output gradient every s-th position, zeros elsewhere
    spread = grad.new_zeros(n, *(i + k - 1 for i, k in zip(in_grid, kernel)), c)
    at = tuple(slice(k - 1 - p, k - 1 - p + (o - 1) * s + 1, s)
               for k, p, o, s in zip(kernel, padding, grad.shape[2:], stride))
    spread[(slice(None), *at)] = grad.permute(0, 2, 3, 4, 1)
    return F.conv3d(spread.permute(0, 4, 1, 2, 3), weight.flip([2, 3, 4]), None, 1, 0, 1, groups)


#: the input gradient spreads the output gradient over the input grid (:func:`_depthwise_cl3d_input_grad`) for
#: strides up to this in every axis; beyond it most of the spread map is zeros and aten's kernel is faster
SPREAD_MAX_STRIDE = 2


def _depthwise_cl3d_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                          padding: tuple[int, ...], want_x: bool, want_w: bool):
    """Input and weight gradients of a channels-last 3-D depthwise convolution, each part in its fastest form
    (module doc)."""
    kernel = tuple(weight.shape[2:])
    grad = grad.contiguous(memory_format=torch.channels_last_3d)
    grad_w = _depthwise_cl3d_weight_grad(grad, x, kernel, stride, padding) if want_w else None
    grad_x = None
    if want_x and all(s <= SPREAD_MAX_STRIDE for s in stride) and all(p < k for p, k in zip(padding, kernel)):
        grad_x = _depthwise_cl3d_input_grad(grad, weight, tuple(x.shape[2:]), stride, padding)
    elif want_x:
        grad_x = torch.ops.aten.convolution_backward(
            channels_first(grad), channels_first(x), weight, None, stride, padding, (1, 1, 1), False, (0, 0, 0),
            weight.shape[0], [True, False, False])[0].contiguous(memory_format=torch.channels_last_3d)
    return grad_x, grad_w


def _is_channels_last_depthwise(x: torch.Tensor, weight: torch.Tensor, groups: int, rank: int) -> bool:
    """Whether ``x`` is a channels-last ``rank``-D map and the convolution with ``weight`` depthwise."""
    return x.dim() == rank + 2 and groups == weight.shape[0] == x.shape[1] and x.movedim(1, -1).is_contiguous()


def _is_cl3d_depthwise(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    return _is_channels_last_depthwise(x, weight, groups, 3)


#: 2-D depthwise kernels whose weight gradient :func:`_depthwise_cl2d_grads` assembles from 3x3 ones: each side
#: 3 or 5 (4 products of aten's 3x3 kernel for 5x5), not 3x3 itself, which aten runs directly
TILED_2D_KERNEL_SIDES = (3, 5)


def _tiles_2d_weight_grad(x: torch.Tensor, weight: torch.Tensor, groups: int, stride: tuple[int, ...]) -> bool:
    """Whether a 2-D depthwise convolution's backward takes :func:`_depthwise_cl2d_grads`: channels-last ``x``,
    stride 1, each kernel side in :data:`TILED_2D_KERNEL_SIDES` and not 3x3."""
    kernel = tuple(weight.shape[2:])
    return (_is_channels_last_depthwise(x, weight, groups, 2) and all(s == 1 for s in stride)
            and all(k in TILED_2D_KERNEL_SIDES for k in kernel) and kernel != (3, 3))


def _depthwise_cl2d_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, ...],
                          want_x: bool, want_w: bool):
    """Input and weight gradients of a stride-1 channels-last 2-D depthwise convolution whose kernel sides are 3
    or 5 (UniFormer's 5x5 local aggregator).

    aten's CPU weight gradient is fast for 3x3 filters only (8x64x56x56 channels-last, one Sapphire Rapids
    thread: 1.1 ms for 3x3, 22 ms for 5x5), so a 5x5 filter's gradient is put together from four 3x3 ones: the
    3x3 block of taps at offset (a, b) is the 3x3 weight gradient of the output gradient against the padded
    input's window starting at (a, b) (overlapping blocks write the same values). The input gradient is the
    forward kernel with the mirrored filter (the adjoint of a stride-1 correlation) where that needs the same
    padding on both sides of each axis, aten's otherwise."""
    kernel = tuple(weight.shape[2:])
    channels = weight.shape[0]
    ph, pw = padding
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad_w = grad_x = None
    if want_w:
        xp = F.pad(x, (pw, pw, ph, ph))
        out_h, out_w = grad.shape[2:]
        tap3 = x.new_empty(channels, 1, 3, 3)
        grad_w = x.new_empty(channels, 1, *kernel)
        for a in sorted({0, kernel[0] - 3}):
            for b in sorted({0, kernel[1] - 3}):
                window = xp[:, :, a:a + out_h + 2, b:b + out_w + 2]
                grad_w[:, :, a:a + 3, b:b + 3] = torch.ops.aten.convolution_backward(
                    grad, window, tap3, None, (1, 1), (0, 0), (1, 1), False, (0, 0), channels,
                    [False, True, False])[1]
    if want_x:
        # the output gradient, padded by k - 1 - p before and whatever reaches the input's size after, correlated
        # with the mirrored filter
        (kh, kw), (h, w) = kernel, x.shape[2:]
        top, left = kh - 1 - ph, kw - 1 - pw
        bottom, right = h + kh - 1 - top - grad.shape[2], w + kw - 1 - left - grad.shape[3]
        if top == bottom and left == right and top >= 0 and left >= 0:
            grad_x = F.conv2d(grad, weight.flip([2, 3]), None, 1, (top, left), 1, channels)
        else:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), padding, (1, 1), False, (0, 0), channels,
                [True, False, False])[0]
    return grad_x, grad_w


def _differentiable_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
                          stride: Sequence[int], padding: Sequence[int], groups: int,
                          want: Sequence[bool]) -> tuple[torch.Tensor | None, ...]:
    """(input, weight, bias) gradients of a convolution from aten's convolution backward in float32, which has a
    derivative of its own: for a backward that records a graph (``create_graph=True``: gradient penalties,
    double backward), where the fast backwards here write into ``out=`` tensors that autograd cannot
    differentiate. The input's gradient comes back in its dtype, the others in float32."""
    gx, gw, gb = _aten_conv_grads(grad.float(), x.float(), weight.float(), has_bias, stride, padding, groups, want)
    return None if gx is None else gx.to(x.dtype), gw, gb


class _DepthwiseCL3d(torch.autograd.Function):
    """Forward: the library kernel; backward: the fastest form per part (see the module doc)."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):  # noqa: D401 - autograd signature
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable ops
            grad_x, grad_w, _ = _differentiable_grads(grad, x, weight, False, ctx.stride, ctx.padding,
                                                      weight.shape[0], (*ctx.needs_input_grad[:2], False))
            return grad_x, grad_w, None, None
        grad_x, grad_w = _depthwise_cl3d_grads(grad, x, weight, ctx.stride, ctx.padding, *ctx.needs_input_grad[:2])
        return grad_x, grad_w, None, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], padding: Sequence[int]) -> torch.Tensor:
    """Depthwise convolution of ``x`` (N, C, *grid) with ``weight`` (C, 1, *kernel), no bias, ``groups=C``.

    On the CPU, with gradients, for a channels-last 3-D ``x`` (the layout MViT's pooling builds), the backward
    is the one of the module doc; otherwise the plain convolution.
    """
    stride, padding = tuple(int(s) for s in stride), tuple(int(p) for p in padding)
    x = gpu_depthwise_input(x, x.device.type)
    # not under autocast: its forward would run in bf16 while the backward gets the float32 input and weight
    if (_is_cl3d_depthwise(x, weight, weight.shape[0]) and x.device.type == "cpu" and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad) and x.dtype == weight.dtype
            and not torch.is_autocast_enabled("cpu")):
        if compiling_for_training(x, weight):  # the same backward, the whole batch at once as here
            return _compiled_forward(x, weight, None, list(stride), list(padding), weight.shape[0], x.dtype, 1 << 62)
        if not is_tracing():
            return _DepthwiseCL3d.apply(x, weight, stride, padding)
    return (F.conv3d if x.dim() == 5 else F.conv2d)(x, weight, None, stride, padding, 1, weight.shape[0])


def gpu_depthwise_input(x: torch.Tensor, device_type: str) -> torch.Tensor:
    """``x`` as a depthwise convolution on ``device_type`` should get it: on CUDA a channels-last 3-D map is made
    contiguous (N, C, T, H, W), which PyTorch's own depthwise 3-D kernel takes instead of cuDNN (module doc);
    anything else is returned as it is."""
    if device_type == "cuda" and x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return x.contiguous()  # itself where it is contiguous too
    return x


@dataclass(frozen=True)
class TiledFilters:
    """Depthwise filters shared over ``tiles`` groups of channels: each of ``bases`` (C, 1, *kernel) repeated
    ``tiles`` times, the results stacked (MViT's per-head pooling filters tiled over all heads, k's and v's in one
    call). :func:`conv_float32_grads` keeps the bases for the backward and tiles them again there, instead of
    keeping the tiled copy, which is a new tensor every step."""

    bases: tuple[torch.Tensor, ...]
    tiles: int

    def tensor(self) -> torch.Tensor:
        """The tiled filters, (len(bases) * tiles * C, 1, *kernel)."""
        rep = (self.tiles,) + (1,) * (self.bases[0].dim() - 1)
        return torch.cat([b.repeat(*rep) for b in self.bases])


#: samples per chunk in :class:`_ConvFloat32Grads`'s backward: as many as hold this many input elements (at least
#: one), unless the caller passes its own budget. MViT's pooling, whose backward runs near MViTv2-T's bf16 peak,
#: keeps this one (555 MB at batch 8 in such chunks, 574 MB on the whole batch); UniFormer's blocks pass a larger
#: one (:data:`vitkit.layers.conv_blocks.BLOCK_CHUNK_ELEMENTS`)
BACKWARD_CHUNK_ELEMENTS = 1 << 18

#: a depthwise convolution's sample of more than this many elements is split over its channels as well, into
#: parts of about this size and at most :data:`MAX_CHANNEL_PARTS` of them: a clip's float32 copies are then made
#: a part at a time (MViT-B 16x4's k|v pooling at 384x8x56x56: 147 MB of float32 working set at once before)
CHANNEL_SPLIT_ELEMENTS = 1 << 20
MAX_CHANNEL_PARTS = 4


def _conv_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool, stride: tuple[int, ...],
                padding: tuple[int, ...], groups: int, want: tuple[bool, bool, bool]):
    """(input, weight, bias) gradients of a convolution, from its input and output gradient alone (no rerun of the
    forward): channels-last 3-D depthwise maps by :func:`_depthwise_cl3d_grads`, the rest by aten's backward."""
    want_x, want_w, want_b = want
    if _is_cl3d_depthwise(x, weight, groups):
        gx, gw = _depthwise_cl3d_grads(grad, x, weight, stride, padding, want_x, want_w)
        return gx, gw, grad.sum((0, 2, 3, 4)) if has_bias and want_b else None
    if _tiles_2d_weight_grad(x, weight, groups, stride):
        gx, gw = _depthwise_cl2d_grads(grad, x, weight, padding, want_x, want_w)
        return gx, gw, grad.sum((0, 2, 3)) if has_bias and want_b else None
    return _aten_conv_grads(grad, x, weight, has_bias, stride, padding, groups, want)


def _aten_conv_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
                     stride: Sequence[int], padding: Sequence[int], groups: int,
                     want: Sequence[bool]) -> tuple[torch.Tensor | None, ...]:
    """(input, weight, bias) gradients of a convolution by aten's backward (None where not wanted)."""
    rank = x.dim() - 2
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if has_bias else None, list(stride), list(padding), [1] * rank, False,
        [0] * rank, groups, [bool(want[0]), bool(want[1]), bool(has_bias and want[2])])


def _reduced_precision_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               stride: tuple[int, ...], padding: tuple[int, ...], groups: int,
                               out_dtype: torch.dtype) -> torch.Tensor:
    """The forward of :func:`conv_float32_grads`: in bf16 where the CPU has bf16 units, else in float32 rounded
    to ``out_dtype``."""
    if x.dtype == torch.bfloat16 == out_dtype and native_bf16():
        return _conv(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), stride, padding, groups)
    return _float32_conv(x, weight, bias, stride, padding, groups, out_dtype)


def _float32_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool,
                   stride: tuple[int, ...], padding: tuple[int, ...], groups: int, chunk_elements: int | None,
                   want: tuple[bool, bool, bool]):
    """The backward of :func:`conv_float32_grads`: (input, weight, bias) gradients, the input's in its dtype,
    the others in float32 (None where not wanted), from float32 copies of ``x`` and ``grad`` made a few samples
    at a time (``chunk_elements``, default :data:`BACKWARD_CHUNK_ELEMENTS`), and a large depthwise sample a part
    of its channels at a time (:data:`CHANNEL_SPLIT_ELEMENTS`). The input gradient does not depend on the split;
    the weight gradient's float32 sums may round differently in their last bit."""
    want_x, want_w, want_b = want
    w32 = weight.detach().float()
    grad_x = torch.empty_like(x) if want_x else None
    grad_w = torch.zeros_like(w32) if want_w else None
    grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=x.device) if want_b else None
    budget = BACKWARD_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    per_sample = x[0].numel()
    chunk = max(1, budget // max(1, per_sample))
    channels = x.shape[1]
    parts = 1
    if groups == channels == weight.shape[0] and per_sample > max(budget, CHANNEL_SPLIT_ELEMENTS):
        # depthwise: each channel's gradients depend on that channel alone
        parts = min(MAX_CHANNEL_PARTS, channels, -(-per_sample // CHANNEL_SPLIT_ELEMENTS))
    size = -(-channels // parts)
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, start + chunk)
        for first in range(0, channels, size):
            cs = slice(first, first + size)
            gx, gw, gb = _conv_grads(grad[rows, cs].float(), x[rows, cs].float(), w32[cs], has_bias, stride,
                                     padding, groups if parts == 1 else w32[cs].shape[0], (want_x, want_w, want_b))
            if want_x:
                grad_x[rows, cs] = gx
            if want_w:
                grad_w[cs] += gw
            if want_b:
                grad_b[cs] += gb
    return grad_x, grad_w, grad_b


class _ConvFloat32Grads(torch.autograd.Function):
    """A convolution of reduced-precision input whose gradients are computed in float32, keeping the input in its
    own dtype for the backward (half the memory of a float32 copy).

    The forward runs in bf16 where the CPU has bf16 units (autocast's own arithmetic, and the faster kernel
    there); elsewhere in float32, rounded to the output dtype. The backward casts input and output gradient to
    float32 a few samples at a time (:data:`BACKWARD_CHUNK_ELEMENTS`), so those copies live for one chunk
    (MViTv2-T's bf16 training peak at batch 8: 599 MB over the whole batch, 580 MB in chunks, with no
    measurable change in step time), and takes the gradients straight from them without rerunning the forward.
    UniFormer-S's depthwise convolutions at batch 8 (Sapphire Rapids, one thread), forward + backward, ms:
    5x5 at 64x56x56 70 -> 46, 3x3 at 64x56x56 25 -> 15, 5x5 at 128x28x28 32 -> 22 against a float32 forward
    and a recomputing backward; all-bf16 (autocast's backward) takes 178 ms for the first.

    With ``tiles`` and ``bases`` (a :class:`TiledFilters` whose tensor is ``weight``), the bases are kept for
    the backward instead of ``weight`` and tiled again there (MViTv2-T's bf16 training step: 0.4 MB fewer).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, groups, out_dtype, chunk_elements=None, tiles=0,
                *bases):  # noqa: D401
        ctx.save_for_backward(x, None if bases else weight, bias, *bases)
        ctx.conv = (stride, padding, groups)
        ctx.tiles, ctx.chunk_elements = tiles, chunk_elements
        return _reduced_precision_forward(x, weight, bias, stride, padding, groups, out_dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, *bases = ctx.saved_tensors
        if bases:
            weight = TiledFilters(tuple(bases), ctx.tiles).tensor()
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        want = (want_x, want_w, want_b and bias is not None)
        if torch.is_grad_enabled():  # create_graph: differentiable ops
            grad_x, grad_w, grad_b = _differentiable_grads(grad, x, weight, bias is not None, *ctx.conv, want)
        else:
            grad_x, grad_w, grad_b = _float32_grads(grad, x, weight, bias is not None, *ctx.conv, ctx.chunk_elements,
                                                    want)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return (grad_x, grad_w, grad_b, None, None, None, None, None, None) + (None,) * len(bases)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
          padding: Sequence[int], groups: int) -> torch.Tensor:
    if bias is None and groups == weight.shape[0] == x.shape[1]:
        return depthwise_conv(x, weight, stride, padding)
    return (F.conv3d if x.dim() == 5 else F.conv2d)(x, weight, bias, stride, padding, 1, groups)


def _float32_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                  padding: Sequence[int], groups: int, out_dtype: torch.dtype) -> torch.Tensor:
    """The convolution computed in float32 and rounded to ``out_dtype``."""
    return _conv(x.float(), weight.float(), None if bias is None else bias.float(), stride, padding,
                 groups).to(out_dtype)


def _output_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format of a convolution's output on ``x`` that the compiled-training ops below promise: channels-last
    where ``x`` is a channels-last map that is not also contiguous, else contiguous."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _output_shape(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], padding: Sequence[int]) -> list:
    return [x.shape[0], weight.shape[0], *((n + 2 * p - k) // s + 1
                                           for n, k, s, p in zip(x.shape[2:], weight.shape[2:], stride, padding))]


# Under torch.compile, training: the forward and backward above as two operators that TorchDynamo and Inductor do
# not look into, so a compiled step runs the same kernels as eager (the bf16 forward, the chunked float32 backward,
# the 5x5 weight gradient from 3x3 pieces, the channels-last 3-D backward) with bit-identical results. Traced as
# plain ops instead, AOTAutograd differentiates aten's convolution and Inductor keeps a float32 copy of the input.
# explicit schemas: torch before 2.5 cannot infer one from this module's postponed (string) annotations
@torch.library.custom_op("vitkit::conv_float32_grads", mutates_args=(), schema=(
    "(Tensor x, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt groups, ScalarType out_dtype, "
    "SymInt? chunk_elements) -> Tensor"))
def _compiled_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int],
                      padding: list[int], groups: int, out_dtype: torch.dtype,
                      chunk_elements: int | None) -> torch.Tensor:
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        out = _reduced_precision_forward(x, weight, bias, tuple(stride), tuple(padding), groups, out_dtype)
    return out.contiguous(memory_format=_output_format(x))


@_compiled_forward.register_fake
def _(x, weight, bias, stride, padding, groups, out_dtype, chunk_elements):
    out = x.new_empty(_output_shape(x, weight, stride, padding), dtype=out_dtype)
    return out.contiguous(memory_format=_output_format(x))


@torch.library.custom_op("vitkit::conv_float32_grads_backward", mutates_args=(), schema=(
    "(Tensor grad, Tensor x, Tensor weight, bool has_bias, SymInt[] stride, SymInt[] padding, SymInt groups, "
    "SymInt? chunk_elements, bool[] want) -> (Tensor, Tensor, Tensor)"))
def _compiled_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, has_bias: bool, stride: list[int],
                       padding: list[int], groups: int, chunk_elements: int | None,
                       want: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        parts = _float32_grads(grad, x, weight, has_bias, tuple(stride), tuple(padding), groups, chunk_elements,
                               tuple(want))
    # an operator returns tensors: an empty one where a gradient is not wanted
    return tuple(x.new_empty(0, dtype=torch.float32) if g is None else g for g in parts)


@_compiled_backward.register_fake
def _(grad, x, weight, has_bias, stride, padding, groups, chunk_elements, want):
    empty = x.new_empty(0, dtype=torch.float32)
    return (torch.empty_like(x) if want[0] else empty,
            x.new_empty(weight.shape, dtype=torch.float32) if want[1] else empty,
            x.new_empty(weight.shape[0], dtype=torch.float32) if want[2] else empty)


def _compiled_setup(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding, groups, _, chunk_elements = inputs
    ctx.save_for_backward(x, weight)
    ctx.conv = (stride, padding, groups, chunk_elements)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _compiled_autograd(ctx, grad):
    x, weight = ctx.saved_tensors
    stride, padding, groups, chunk_elements = ctx.conv
    has_bias = ctx.bias_dtype is not None
    want = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]), has_bias and bool(ctx.needs_input_grad[2])]
    gx, gw, gb = _compiled_backward(grad, x, weight, has_bias, stride, padding, groups, chunk_elements, want)
    return (gx if want[0] else None, gw.to(weight.dtype) if want[1] else None,
            gb.to(ctx.bias_dtype) if want[2] else None, None, None, None, None, None)


_compiled_forward.register_autograd(_compiled_autograd, setup_context=_compiled_setup)


#: whether compiled training takes the operators above (:func:`compiled_depthwise_operators`)
_COMPILED_OPERATORS = Switch()


def compiled_depthwise_operators(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, models compiled for training take vitkit's depthwise operators (``enabled``, the
    default) or the plain traced ops that ran before (for the A/B of ``benchmarks/bench_allocator.py --setting
    compiled_depthwise``). TorchDynamo guards on the setting: each side compiles its own graph once."""
    return _COMPILED_OPERATORS.set(enabled)


def compiling_for_training(*tensors: torch.Tensor) -> bool:
    """Whether TorchDynamo is tracing a step that will differentiate one of ``tensors`` (torch.compile in
    training; not torch.export, TorchScript or inference, which keep plain ops), with the operators on."""
    return (_COMPILED_OPERATORS.on and is_compiling() and torch.is_grad_enabled()
            and any(t is not None and t.requires_grad for t in tensors))


def conv_float32_grads(x: torch.Tensor, weight: torch.Tensor | TiledFilters, bias: torch.Tensor | None,
                       stride: Sequence[int], padding: Sequence[int], groups: int,
                       chunk_elements: int | None = None) -> torch.Tensor:
    """A (depthwise) convolution of reduced-precision ``x`` with float32 gradients (see
    :func:`float32_on_this_device` and :class:`_ConvFloat32Grads`), returned in the dtype autocast would give;
    the backward keeps ``x`` as it is, not a float32 copy (and of :class:`TiledFilters`, only their bases).
    ``chunk_elements``: the backward's float32 copies cover as many samples as hold this many elements
    (default :data:`BACKWARD_CHUNK_ELEMENTS`); larger chunks are faster and hold more memory at once."""
    out_dtype = reduced_precision_dtype(x)
    tiles, bases, tensor = (weight.tiles, weight.bases, weight.tensor()) if isinstance(weight, TiledFilters) \
        else (0, (), weight)
    if compiling_for_training(x, tensor, bias):
        return _compiled_forward(x, tensor, bias, [int(s) for s in stride], [int(p) for p in padding], groups,
                                 out_dtype, chunk_elements)
    if is_tracing():
        # export, TorchScript, inference: the float32 arithmetic as plain ops
        with torch.autocast("cpu", enabled=False):
            return _float32_conv(x, tensor, bias, stride, padding, groups, out_dtype)
    with torch.autocast("cpu", enabled=False):
        return _ConvFloat32Grads.apply(x, tensor, bias, tuple(int(s) for s in stride), tuple(int(p) for p in padding),
                                       groups, out_dtype, chunk_elements, tiles, *bases)


def float32_on_this_device(x: torch.Tensor) -> bool:
    """Whether a depthwise convolution of ``x`` on the CPU in bf16 / fp16 (the input's dtype or autocast's) should
    go through :func:`conv_float32_grads`: float32 gradients, and a float32 forward where the CPU lacks bf16
    units. Depthwise kernels there are 3-10x slower in reduced precision than in float32 (UniFormer-S's 5x5 at
    64x56x56, batch 8: 69 vs 16 ms on AVX2), and they are a small share of the arithmetic, so float32 costs
    little. On a CPU with bf16 units the bf16 forward is the faster one (the same 5x5, Sapphire Rapids, one
    thread: 2.7 ms in bf16 vs 6.3 ms through float32; MViT-B's 3x3x3 pooling at 96x8x56x56, 2.1 vs 4.2 ms) but
    its backward is 4x slower than float32's, so training keeps float32 gradients and inference (no autograd)
    takes the plain bf16 convolution. The same holds under ``torch.compile`` (:func:`conv_float32_grads`'s
    operators in training)."""
    if x.device.type != "cpu":
        return False
    dtype = reduced_precision_dtype(x) if torch.is_autocast_enabled("cpu") else x.dtype
    if dtype not in (torch.bfloat16, torch.float16):
        return False
    return not (dtype == torch.bfloat16 and not torch.is_grad_enabled() and native_bf16())


def float32_fast_backward(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int]) -> bool:
    """Whether a depthwise convolution module (with its bias) on ``x`` should take :func:`conv_float32_grads` in
    float32 too, for the faster backward of the module doc, in a float32 CPU training step (no autocast): over a
    channels-last clip, where aten's backward is several times slower (UniFormer-S 16x4: 2.1 s of a 6 s step),
    or over a channels-last image map with a kernel aten's fast 3x3 weight gradient misses
    (:func:`_depthwise_cl2d_grads`; UniFormer's 5x5)."""
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and (not is_tracing() or compiling_for_training(x, weight))):
        return False
    if x.dim() == 5:
        return x.movedim(1, -1).is_contiguous()
    return _tiles_2d_weight_grad(x, weight, weight.shape[0], tuple(stride))


def reduced_precision_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of ``x`` returns: autocast's where it is on, else ``x``'s."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype

