"""Inference fast path for Linear layers on the CPU: oneDNN matmul with the bias, GELU and residual add fused.

A plain ``F.linear`` on the CPU copies the bias into the output before the GEMM and then makes separate
passes for the activation and the residual add; about a fifth of a ViT-B forward is spent in those passes.
oneDNN's fused linear (``torch.ops.mkldnn._linear_pointwise``, the kernel torch.compile's CPU backend uses)
does all of it in the GEMM epilogue. It is used only where it is exactly a drop-in: CPU float32 tensors, no
autograd (``torch.no_grad`` / ``inference_mode``), not tracing, compiling or exporting, and not disabled by
:func:`fused_linear_enabled`. Everywhere else the ordinary ops run. Results agree with the unfused ops to
float32 rounding (about 1e-6 relative).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

_ENABLED = [True]


def _available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_HAS_ONEDNN = _available()


@contextlib.contextmanager
def fused_linear_enabled(enabled: bool) -> Iterator[None]:
    """Turn the fused CPU path on or off inside the block (off: exactly the ops an exporter sees)."""
    previous = _ENABLED[0]
    _ENABLED[0] = enabled
    try:
        yield
    finally:
        _ENABLED[0] = previous


def is_tracing() -> bool:
    """True while TorchScript, torch.compile or torch.export trace the model (their tensors are placeholders)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return True
    if getattr(torch.compiler, "is_exporting", lambda: False)():
        return True
    from torch._guards import detect_fake_mode

    return detect_fake_mode() is not None


def _use_fused(x: torch.Tensor, layer: nn.Linear) -> bool:
    return (
        _ENABLED[0]
        and _HAS_ONEDNN
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and layer.weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not is_tracing()
    )


def linear(
    x: torch.Tensor, layer: nn.Linear, act: str | None = None, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """``act(layer(x)) (+ residual)``, with ``act`` None or 'gelu' (exact erf GELU); fused on the CPU at inference.

    ``residual`` may only be given without ``act`` (linear + add, as a block's output projection).
    """
    if act not in (None, "gelu"):
        raise ValueError(f"act must be None or 'gelu', got {act!r}")
    if residual is not None and act is not None:
        raise ValueError("fused linear supports an activation or a residual add, not both")
    if _use_fused(x, layer) and x.is_contiguous() and (residual is None or residual.is_contiguous()):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if residual is not None:
            out = torch.ops.mkldnn._linear_pointwise.binary(
                x2, residual.reshape(-1, layer.out_features), layer.weight, layer.bias, "add"
            )
        else:
            out = torch.ops.mkldnn._linear_pointwise(x2, layer.weight, layer.bias, act or "none", [], "none" if act else "")
        return out.reshape(*shape[:-1], layer.out_features)
    y = layer(x)
    if act == "gelu":
        y = F.gelu(y)
    if residual is not None:
        y = residual + y
    return y
