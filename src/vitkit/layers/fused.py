"""Inference fast path for Linear layers on the CPU: oneDNN matmul with the bias, GELU and residual add fused.

A plain ``F.linear`` on the CPU copies the bias into the output before the GEMM and then makes separate
passes for the activation and the residual add; about a fifth of a ViT-B forward is spent in those passes.
oneDNN's fused linear (``torch.ops.mkldnn._linear_pointwise``, the kernel torch.compile's CPU backend uses)
does all of it in the GEMM epilogue. It is used only where it is a drop-in: CPU float32 tensors (or CPU bf16
autocast, below), no autograd (``torch.no_grad`` / ``inference_mode``), not tracing, compiling or exporting, and
not disabled by :func:`fused_linear_enabled`. Everywhere else the ordinary ops run. Results agree with the
unfused ops to float32 rounding (about 1e-6 relative).

Under CPU bf16 autocast (no autograd, a CPU with bf16 units) the same fused kernel runs in bf16, on a bf16 copy
of the weight and bias kept per layer (:func:`bf16_params`) instead of autocast's fresh cast on every call: on
a Sapphire Rapids core those casts were a fifth of a ViT-B/16 bf16 forward (86 M weights read in fp32 and
written in bf16 per forward), and the separate bias copy, GELU and add passes most of the rest outside the
GEMMs. Numbers are autocast's to bf16 rounding: bf16 operands, fp32 accumulation, one rounding of the output
(autocast rounds before the GELU as well). A float32 residual is added outside the kernel, as autocast does, so
the residual stream stays float32. 1x1 convolutions on channels-last maps (see :func:`fusable`) and row slices
of a weight (``rows=``, MViT's q and kv of one qkv Linear) take the same path.

Training under CPU bf16 autocast (a CPU with bf16 units) runs every Linear's forward through the same oneDNN kernel,
bias in the epilogue, with autocast's own bf16 casts of input, weight and bias (:func:`projection`; the weight is
cast again in the backward rather than kept, see :class:`_SplitLinear`). ``F.linear`` there is an ``addmm`` that
first copies the bias into every output row (5 % of a Swin-T bf16 step), and its weight gradient comes out
transposed, so the cast back to the float32 weight reads it strided (3 %). The backward is the same matrix products
in the order aten runs them, the weight gradient produced in the weight's own layout: values and gradients are
bit-identical to autocast's ``F.linear`` (``tests/test_layers.py``), except that a wide layer's weight gradient (an
MLP's second layer, see :func:`transposes_output_grad`) is the product on a transposed copy of the output gradient,
which can differ from autocast's in its last bits (bf16 rounding). GELU and residual stay outside the kernel there,
since the backward needs the pre-activation.

Float32 training takes the same oneDNN forward for narrow layers over many rows (:func:`trains_in_fp32`: the
first stages of Swin, MViT and UniFormer's 1x1 convolutions), where ``addmm``'s bias copy and MKL's blocking for a
short inner dimension cost 1.2-1.3x the fused kernel's time; the backward's weight gradient is taken in the
orientation that runs faster (:func:`weight_grad`). Outputs and gradients are ``F.linear``'s bit for bit at the
shapes measured and tested.
"""
from __future__ import annotations

import weakref
from typing import ContextManager, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cpu_features import native_bf16
from .switch import Switch

_ENABLED = Switch()
#: per layer: (what names its weight's and bias's values, bf16 weight, bf16 bias); dies with the layer
_BF16: "weakref.WeakKeyDictionary[nn.Linear, tuple]" = weakref.WeakKeyDictionary()


def _available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_HAS_ONEDNN = _available()


def fused_linear_enabled(enabled: bool) -> ContextManager[None]:
    """Turn the fused CPU path on or off inside the block (off: exactly the ops an exporter sees)."""
    return _ENABLED.set(enabled)


def _exporting() -> bool:
    return getattr(torch.compiler, "is_exporting", lambda: False)()


def is_compiling() -> bool:
    """True while TorchDynamo traces for torch.compile, not for torch.export (whose graphs must run without
    vitkit's operators and compiled-only forms)."""
    return torch.compiler.is_compiling() and not _exporting()


def is_tracing() -> bool:
    """True while TorchScript, torch.compile or torch.export trace the model (their tensors are placeholders), and
    inside ``torch.func`` transforms (``grad``, ``vmap``: per-sample gradients), whose wrapped tensors take only
    plain ops: vitkit's own autograd functions and in-place tricks step aside for all of them."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return True
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    if _exporting():
        return True
    from torch._guards import detect_fake_mode

    return detect_fake_mode() is not None


#: a Linear, or a 1x1 convolution (a Linear over the channels of a channels-last map)
Projection = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d
#: the convolutions a :data:`Projection` may be
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fused_dtype(x: torch.Tensor, layer: Projection) -> torch.dtype | None:
    """The dtype the fused kernel runs in for ``layer(x)`` here: float32, bfloat16 (CPU bf16 autocast), or None
    (not fused: the ordinary ops run)."""
    if not (_ENABLED.on and _HAS_ONEDNN and x.device.type == "cpu" and _pointwise(layer)
            and layer.weight.dtype == torch.float32 and not torch.is_grad_enabled()):
        return None
    if not torch.is_autocast_enabled("cpu"):
        return torch.float32 if x.dtype == torch.float32 and not is_tracing() else None
    if (torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16)
            and not is_tracing() and native_bf16()):
        return torch.bfloat16
    return None


def _same_values(entry: tuple, t: torch.Tensor | None) -> bool:
    """Whether ``entry`` ((weakref, storage, version) or None) still names ``t``'s values: the same tensor object,
    storage and version (weakrefs are compared by their referent's identity: ``==`` would compare tensors)."""
    if t is None or entry is None:
        return t is None and entry is None
    return entry[0]() is t and entry[1] == t.data_ptr() and entry[2] == t._version


def _names(t: torch.Tensor | None) -> tuple | None:
    return None if t is None else (weakref.ref(t), t.data_ptr(), t._version)


def _pointwise(layer: Projection) -> bool:
    """A Linear, or a convolution that is one: 1x1(x1), stride 1, no padding or dilation, one group."""
    if isinstance(layer, nn.Linear):
        return True
    if not isinstance(layer, _CONVS):
        return False  # another module in a Linear's place (an adapter): only its own call computes it
    return (all(k == 1 for k in layer.kernel_size) and all(s == 1 for s in layer.stride) and layer.groups == 1
            and not any(layer.padding) and all(d == 1 for d in layer.dilation))


def fusable(x: torch.Tensor, layer: Projection) -> bool:
    """Whether :func:`linear` runs ``layer`` on the (..., in_features) tokens ``x`` through the fused kernel; a
    caller that would pass a 1x1 convolution's channels-last map as tokens asks first."""
    return x.is_contiguous() and _fused_dtype(x, layer) is not None


def _weight(layer: Projection) -> torch.Tensor:
    """(out, in) view of a Linear's or a 1x1 convolution's weight."""
    return layer.weight if layer.weight.dim() == 2 else layer.weight.flatten(1)


def release_bf16_weights() -> None:
    """Free every kept bf16 weight copy (2 bytes per Linear weight: 170 MB for ViT-B); the next bf16 inference
    call casts again."""
    _BF16.clear()


def bf16_params(layer: Projection) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``layer``'s (out, in) weight and bias in bf16, cast once and kept until the layer changes them (in-place
    updates, ``load_state_dict``) or dies. Inference-mode parameters (no version counter) are cast every call."""
    w, b = layer.weight, layer.bias
    if w.is_inference() or (b is not None and b.is_inference()):
        return _weight(layer).to(torch.bfloat16), None if b is None else b.to(torch.bfloat16)
    hit = _BF16.get(layer)
    if hit is None or not (_same_values(hit[0], w) and _same_values(hit[1], b)):
        with torch.inference_mode(False), torch.no_grad():
            w16 = _weight(layer).detach().to(torch.bfloat16)
            hit = (_names(w), _names(b), w16, None if b is None else b.detach().to(torch.bfloat16))
        _BF16[layer] = hit
    return hit[2], hit[3]


def trains_in_bf16(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether an op on ``x`` with float32 ``weight`` is part of a CPU bf16 autocast training step on a CPU with bf16
    units, not traced: where :func:`projection` runs oneDNN's linear (:class:`_SplitLinear`, one block)."""
    return (_ENABLED.on and _HAS_ONEDNN and x.device.type == "cpu" and weight.dtype == torch.float32
            and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16)
            and not is_tracing() and native_bf16())


_FP32_TRAINING = Switch()

#: float32 training runs a Linear's forward through oneDNN when it has at most this many inputs ...
FP32_ONEDNN_MAX_IN = 384
#: ... and at least this many rows (tokens)
FP32_ONEDNN_MIN_ROWS = 4096


def fp32_training_onednn(enabled: bool) -> ContextManager[None]:
    """Turn the oneDNN forward of narrow float32 training linears (:func:`trains_in_fp32`) on or off inside the
    block (for A/B measurements; on by default)."""
    return _FP32_TRAINING.set(enabled)


def trains_in_fp32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a float32 CPU training op ``x @ weight^T`` runs as one :class:`_SplitLinear` block with oneDNN's
    forward: a narrow layer (at most :data:`FP32_ONEDNN_MAX_IN` inputs) over many rows (at least
    :data:`FP32_ONEDNN_MIN_ROWS`), not traced, without autocast.

    There ``F.linear``'s ``addmm`` copies the bias into every output row before the GEMM, and oneDNN's kernel with
    the bias in its epilogue took 1.2-1.3x less time (one Sapphire Rapids thread, medians of 15: Swin-T's and
    MViTv2-T's first-stage layers at 25088 tokens, 96 -> 384 41.9 -> 34.9 ms, 96 -> 288 19.1 -> 14.4 ms, 384 -> 96
    20.7 -> 16.9 ms; 6272 tokens 192 -> 768 16.9 -> 14.0 ms) with bitwise the same output, while at 768 or more
    inputs or a few thousand rows it was level or up to 7 % slower (and rounds differently). With two threads the
    forward keeps most of that lead; whole steps there are level (``benchmarks/TRAINING_HISTORY.md``).
    """
    return (_FP32_TRAINING.on and _ENABLED.on and _HAS_ONEDNN and x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32 and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and weight.shape[1] <= FP32_ONEDNN_MAX_IN
            and not is_tracing()  # before the size test: a traced size would get a guard
            and x.numel() >= FP32_ONEDNN_MIN_ROWS * weight.shape[1])


def projection(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for (out, in) ``weight``; a CPU bf16 autocast training step, and a narrow
    float32 training layer (:func:`trains_in_fp32`), run it through oneDNN (module doc), with the same values
    and gradients."""
    if trains_in_bf16(x, weight):
        dtype = torch.bfloat16
    elif trains_in_fp32(x, weight):
        dtype = torch.float32
    else:
        return F.linear(x, weight, bias)
    shape = x.shape
    out, = _SplitLinear.apply(x.reshape(-1, shape[-1]), weight, bias, (weight.shape[0],), dtype, True)
    return out.reshape(*shape[:-1], weight.shape[0])


#: a bf16 weight gradient ``g^T x`` of a layer at least this wide in (and twice as wide in as out) runs on a
#: contiguous copy of ``g^T`` (:func:`transposes_output_grad`)
TRANSPOSED_GRAD_MIN_IN = 1024


def transposes_output_grad(in_features: int, out_features: int, dtype: torch.dtype) -> bool:
    """Whether the bf16 weight gradient ``g^T x`` of a (out, in) layer runs on a contiguous copy of ``g^T``.

    oneDNN's bf16 matrix product reads a transposed left operand slowly when the product is wide (``in``) and its
    rows (``out``) few: for an MLP's second layer the copy plus the product take 20-40 % less time than the
    product on the transposed view (medians of 21, one Sapphire Rapids thread: ViT-B/16's fc2 at batch 8, 1576
    tokens, 3072 -> 768, 41.5 -> 28.8 ms; ViT-S/16's 1536 -> 384, 11.3 -> 8.2 ms; Swin-T's last stage, 392 tokens,
    3072 -> 768, 11.0 -> 6.8 ms; UniFormer-S's 1280 -> 320, 7.5 -> 5.5 ms). For narrower or square layers it is
    slower (Swin-T's 96 -> 384 at 25088 tokens: 10 -> 25 ms), and float32 gains nothing (the transposed view is
    the fast one there). The two orders of the fp32 accumulation can round a weight gradient differently in its
    last bits (bf16 rounding); nothing else changes.
    """
    return dtype == torch.bfloat16 and in_features >= TRANSPOSED_GRAD_MIN_IN and in_features >= 2 * out_features


def weight_grad(g: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``g^T x`` (a Linear's (out, in) weight gradient from its (rows, out) output gradient and (rows, in) input)
    into ``out``, the product taken in the orientation that runs fastest.

    bf16: see :func:`transposes_output_grad`. float32: a layer wider out than in takes ``(x^T g)^T``, the
    product with more columns than rows, as autograd's ``addmm`` backward does, and copies it into place; a
    narrower one takes ``g^T x`` directly (the other orientation and the copy cost more). One Sapphire Rapids
    thread, medians of 33, ms, ``g^T x`` / ``(x^T g)^T``: 25088 rows 96 -> 384 22.9 / 15.0, 96 -> 288 16.5 / 11.7,
    384 -> 96 14.8 / 23.0; 6272 rows 192 -> 768 15.0 / 13.8, 768 -> 192 13.9 / 15.5. The values were bitwise equal
    in every shape measured (MKL sums over the rows in the same order either way).
    """
    n, k = out.shape
    if x.dtype == torch.float32 and n > k:
        return out.copy_(torch.mm(x.t(), g).t())
    gt = g.t().contiguous() if transposes_output_grad(k, n, x.dtype) else g.t()
    return torch.mm(gt, x, out=out)


class _SplitLinear(torch.autograd.Function):
    """Outputs ``x W_i^T + b_i`` for consecutive row blocks ``W_i`` of one weight, each a dense tensor of its own
    (one block: :func:`projection`). With ``onednn`` the products run through oneDNN's linear, the bias in its
    epilogue; the backward is ``addmm``'s matrix products in aten's order, the weight gradient in its own layout.

    Autograd through row slices of the weight would build one zero-filled float32 gradient of the whole weight
    per block and add them (three copies at once, 20 MB for MViTv2-T's last qkv); here the blocks' gradients
    are written into one buffer. ``x`` arrives in float32 (or the compute dtype) and is cast here once, and its
    gradient is each block's cast to float32 and summed there, so values and gradients are those of one
    ``F.linear`` per block under autocast, bit for bit (a wide block's bf16 weight gradient to bf16 rounding:
    :func:`transposes_output_grad`).

    A float32 weight and bias with a bf16 ``dtype`` (autocast training) are cast here, and the weight is cast
    again in the backward instead of keeping its bf16 copy from the forward to the backward, as autocast does:
    the copies of all layers were alive together at the start of the backward (2 bytes per weight: 43 MB of
    ViT-S/16's 346 MB peak at batch 8, which was above timm's), and casting again costs about 1 % of the step.
    Their gradients are the bf16 ones cast to float32, as autocast's cast backward makes them.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, sizes, dtype, onednn):  # noqa: D401 - autograd signature
        xc = x.to(dtype)
        ctx.save_for_backward(xc, weight)
        ctx.sizes, ctx.x_dtype, ctx.has_bias = sizes, x.dtype, bias is not None
        weight = weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        outs, start = [], 0
        for n in sizes:
            w, b = weight[start:start + n], None if bias is None else bias[start:start + n]
            outs.append(torch.ops.mkldnn._linear_pointwise(xc, w, b, "none", [], "") if onednn else F.linear(xc, w, b))
            start += n
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        xc, param = ctx.saved_tensors
        weight = param.to(xc.dtype)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: the gradients must be differentiable themselves (no out=)
            return _differentiable_grads(ctx, grads, xc, param, weight)
        grad_x = None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = weight.new_empty(weight.shape[0]) if ctx.has_bias and need_b else None
        start = 0
        for n, g in zip(ctx.sizes, grads):
            rows = slice(start, start + n)
            start += n
            if g is None:
                if grad_w is not None:
                    grad_w[rows] = 0
                if grad_b is not None:
                    grad_b[rows] = 0
                continue
            # the weight's first: a transposed copy of g is freed before the input's gradient exists
            if grad_w is not None:
                weight_grad(g, xc, out=grad_w[rows])
            if grad_b is not None:
                torch.sum(g, 0, out=grad_b[rows])
            if need_x:
                part = g.mm(weight[rows]).to(ctx.x_dtype)
                grad_x = part if grad_x is None else grad_x + part
        if need_x and grad_x is None:
            grad_x = torch.zeros(xc.shape, dtype=ctx.x_dtype, device=xc.device)
        del weight
        grad_w = None if grad_w is None else grad_w.to(param.dtype)
        grad_b = None if grad_b is None else grad_b.to(param.dtype)
        return grad_x, grad_w, grad_b, None, None, None


def _differentiable_grads(ctx, grads, xc: torch.Tensor, param: torch.Tensor, weight: torch.Tensor) -> tuple:
    """:class:`_SplitLinear`'s gradients from differentiable ops, for a backward that records a graph
    (``create_graph=True``: gradient penalties, double backward); its own backward's values to float32 rounding
    (the split blocks' sums run in another order).

    Only where the saved input is the input itself (float32 training): a bf16 copy made inside the forward has no
    graph back to the input, so a second derivative through the weight gradient would silently miss its input
    term; that case raises instead."""
    if xc.dtype != ctx.x_dtype:
        raise RuntimeError(
            "double backward (create_graph=True) through vitkit's CPU bf16 autocast training linear is not "
            "supported: compute the gradient penalty in float32, or inside "
            "vitkit.layers.fused.fused_linear_enabled(False)")
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    grad_x, grad_w, grad_b, start = None, [], [], 0
    for n, g in zip(ctx.sizes, grads):
        rows = slice(start, start + n)
        start += n
        if g is None:
            g = xc.new_zeros(xc.shape[0], n)
        grad_w.append(g.t().mm(xc))
        grad_b.append(g.sum(0))
        part = g.mm(weight[rows])
        grad_x = part if grad_x is None else grad_x + part
    return (grad_x.to(ctx.x_dtype) if need_x else None,
            torch.cat(grad_w).to(param.dtype) if need_w else None,
            torch.cat(grad_b).to(param.dtype) if ctx.has_bias and need_b else None, None, None, None)


def split_linear(x: torch.Tensor, layer: nn.Linear, sizes: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """``layer(x)`` split into parts of ``sizes`` output features. On the CPU each is computed from its own rows of
    the weight (a dense tensor each: MViT's q and k|v of one fused qkv): fused at inference (:func:`linear` with
    ``rows``), with autograd one :class:`_SplitLinear` (oneDNN in bf16 autocast training), while tracing the
    ordinary ops on row slices. Elsewhere (CUDA) one product and views of its output, as timm and torchvision
    compute a qkv: on an H200 vitkit's MViT-B issued 84 ``addmm`` calls a forward against torchvision's 68 (two
    products per block for one), at about twice the host time per call (``benchmarks/results/gpu_probe_h200.txt``),
    and under autocast each row slice is cast on its own."""
    if sum(sizes) != layer.out_features:
        raise ValueError(f"split_linear sizes {list(sizes)} do not add up to {layer.out_features} outputs")
    if x.device.type != "cpu":
        return linear(x, layer).split(list(sizes), dim=-1)
    bf16 = trains_in_bf16(x, layer.weight)
    fp32 = (torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and x.dtype == layer.weight.dtype == torch.float32 and not is_tracing())
    if not (bf16 or fp32):
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return tuple(linear(x, layer, rows=slice(a, a + n)) for a, n in zip(starts, sizes))
    shape = x.shape
    outs = _SplitLinear.apply(x.reshape(-1, shape[-1]), layer.weight, layer.bias, tuple(sizes),
                              torch.bfloat16 if bf16 else torch.float32, bf16)
    return tuple(o.reshape(*shape[:-1], n) for o, n in zip(outs, sizes))


def linear(
    x: torch.Tensor, layer: Projection, act: str | None = None, residual: torch.Tensor | None = None,
    rows: slice | None = None,
) -> torch.Tensor:
    """``act(layer(x)) (+ residual)``, with ``act`` None or 'gelu' (exact erf GELU); fused on the CPU at inference.

    ``residual`` may only be given without ``act`` (linear + add, as a block's output projection). ``layer`` may
    be a 1x1 convolution applied to tokens (its map's channels last) only where :func:`fusable` says so.
    ``rows`` computes only those outputs of a Linear (``F.linear(x, W[rows], b[rows])``, e.g. q of a fused qkv).
    """
    if act not in (None, "gelu"):
        raise ValueError(f"act must be None or 'gelu', got {act!r}")
    if residual is not None and act is not None:
        raise ValueError("fused linear supports an activation or a residual add, not both")
    dtype = _fused_dtype(x, layer)
    if dtype is not None and x.is_contiguous() and (residual is None or residual.is_contiguous()):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        weight, bias = (_weight(layer), layer.bias) if dtype == torch.float32 else bf16_params(layer)
        if rows is not None:  # rows of a contiguous (out, in) weight: still contiguous
            weight, bias = weight[rows], None if bias is None else bias[rows]
        n_out = weight.shape[0]
        if residual is not None and residual.dtype == dtype:
            out = torch.ops.mkldnn._linear_pointwise.binary(x2, residual.reshape(-1, n_out), weight, bias, "add")
            return out.reshape(*shape[:-1], n_out)
        out = torch.ops.mkldnn._linear_pointwise(x2, weight, bias, act or "none", [], "none" if act else "")
        out = out.reshape(*shape[:-1], n_out)
        return out if residual is None else residual + out
    if isinstance(layer, _CONVS):
        raise ValueError("a convolution runs as a linear over tokens only on the fused path (check fusable first)")
    if not isinstance(layer, nn.Linear):
        # another module in a Linear's place (peft's LoRA around qkv): its own call, whatever it adds
        if rows is not None:
            raise ValueError(f"rows= needs an nn.Linear, got {type(layer).__name__}")
        y = layer(x)
    elif rows is None:
        # a plain Linear without hooks runs as its op (:func:`projection`); anything else through its own call
        plain = type(layer) is nn.Linear and not (layer._forward_hooks or layer._forward_pre_hooks)
        y = projection(x, layer.weight, layer.bias) if plain else layer(x)
    else:
        y = projection(x, layer.weight[rows], None if layer.bias is None else layer.bias[rows])
    if act == "gelu":
        y = F.gelu(y)
    if residual is not None:
        y = residual + y
    return y
