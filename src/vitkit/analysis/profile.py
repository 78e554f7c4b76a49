"""Parameters and multiply-accumulates (MACs, what the papers call FLOPs), per stage, beside the paper's figures.

What counts as one MAC: one multiply-add of a matrix product or convolution - ``mm``/``addmm``/``bmm``/
``baddbmm`` (every Linear and explicit matmul), convolutions (``out_elements * in_channels/groups * kernel``)
and fused attention (``B * heads * Nq * Nk * (d_qk + d_v)``, both of its matmuls). Norms, activations, softmax,
pooling, interpolation and element-wise ops are not counted. fvcore counts the same matmuls and convolutions
plus norms and pooling (0.1-0.5 % more); fvcore and ``torch.utils.flop_counter`` count *zero* for fused
``scaled_dot_product_attention``, which is why their ViT figures come out lower unless attention is unfused.
Video figures are per view (one clip, one crop).

Counting runs on the ``meta`` device when a model name is given, so even ViT-H costs no memory or time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from vitkit.models.variants import VARIANTS
from vitkit.registry import create_model, model_info

aten = torch.ops.aten


def _mm(a, b) -> int:
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(a, b) -> int:
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _sdpa(q, k, v) -> int:
    batch = math.prod(q.shape[:-2])
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _count(func, args, out) -> int:
    if func in (aten.mm.default,):
        return _mm(args[0], args[1])
    if func in (aten.addmm.default,):
        return _mm(args[1], args[2])
    if func in (aten.bmm.default,):
        return _bmm(args[0], args[1])
    if func in (aten.baddbmm.default,):
        return _bmm(args[1], args[2])
    if func in (aten.convolution.default, aten._convolution.default):
        w = args[1]
        o = out
        return o.numel() * w.shape[1] * math.prod(w.shape[2:])
    if func in _SDPA_OPS:
        return _sdpa(args[0], args[1], args[2])
    if func is _NATIVE_MHA:  # qkv projection + attention + output projection in one kernel
        x, heads, w_qkv = args[0], args[4], args[5]
        b, n, c = x.shape
        return b * n * (w_qkv.shape[0] * c + c * c) + b * n * n * 2 * c
    if func in _FUSED_LINEAR_OPS:  # oneDNN linear (+ bias/activation/add): input (M, K), weight (N, K)
        x, w = (args[0], args[2]) if func is _FUSED_BINARY else (args[0], args[1])
        return x.numel() // x.shape[-1] * w.shape[0] * w.shape[1]
    return 0


_SDPA_OPS = {
    getattr(aten, n).default
    for n in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    if hasattr(aten, n)
}


_FUSED_BINARY = torch.ops.mkldnn._linear_pointwise.binary if hasattr(torch.ops.mkldnn, "_linear_pointwise") else None
_FUSED_LINEAR_OPS = (
    {torch.ops.mkldnn._linear_pointwise.default, _FUSED_BINARY} if _FUSED_BINARY is not None else set()
)


_NATIVE_MHA = getattr(getattr(aten, "_native_multi_head_attention", None), "default", None)


class MacCounter(TorchDispatchMode):
    """Counts MACs of the ops above, attributed to the innermost active stage label."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_stage: dict[str, int] = {}
        self.stack: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        n = _count(func, args, out)
        if n:
            self.total += n
            stage = self.stack[-1] if self.stack else OTHER
            self.by_stage[stage] = self.by_stage.get(stage, 0) + n
        return out


@dataclass
class ProfileResult:
    name: str
    input_size: tuple[int, ...]
    params: int
    macs: int
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (params, macs); they add up to the totals
    paper_params: float | None = None  # millions
    paper_macs: float | None = None  # G

    @property
    def flops(self) -> int:
        """2 x MACs (the convention of torch.utils.flop_counter and of hardware peak figures)."""
        return 2 * self.macs

    def table(self) -> str:
        rows = [f"{self.name}  input {self.input_size}"]
        rows.append(f"{'stage':<24}{'params (M)':>12}{'MACs (G)':>12}")
        for stage, (p, m) in self.stages.items():
            rows.append(f"{stage:<24}{p / 1e6:>12.3f}{m / 1e9:>12.3f}")
        pp = f" (paper {self.paper_params:.2f})" if self.paper_params else ""
        pm = f" (paper {self.paper_macs:.2f})" if self.paper_macs else ""
        rows.append(f"{'total':<24}{self.params / 1e6:>12.3f}{self.macs / 1e9:>12.3f}")
        rows.append(f"params {self.params / 1e6:.3f} M{pp}; MACs {self.macs / 1e9:.3f} G{pm}; FLOPs = 2 x MACs")
        return "\n".join(rows)


OTHER = "other"  # the row for parameters outside every stage (class token, final norm) and any MACs run there


def stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Stages to attribute cost to: ``model.profile_stages()`` if defined, else the top-level children."""
    if hasattr(model, "profile_stages"):
        return list(model.profile_stages())
    return list(model.named_children())


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """MACs of ``model(x)`` in total and per stage (no gradients, model left in its mode).

    Every module inside a stage carries the stage's label, not only the stage module itself: a model may run a
    stage's blocks through its own methods and never call the stage (Swin runs ``layers[i].blocks`` one by one).
    MACs run outside every stage are counted under :data:`OTHER`, so the stages always add up to the total.
    """
    counter = MacCounter()
    handles = []
    for name, stage in stage_modules(model):
        for mod in stage.modules():
            handles.append(mod.register_forward_pre_hook(lambda m, a, n=name: counter.stack.append(n) and None))
            handles.append(mod.register_forward_hook(lambda m, a, o: counter.stack.pop() and None))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counter.total, counter.by_stage


def profile(
    model: nn.Module | str, input_size: Sequence[int] | None = None, batch_size: int = 1, **overrides
) -> ProfileResult:
    """Parameters and MACs of a model (or a registered name, built on the meta device) for one input.

    ``input_size`` is (C, H, W) or (C, T, H, W) without the batch; it defaults to the variant's.
    """
    if isinstance(model, str):
        with torch.device("meta"):
            model = create_model(model, **overrides)
    name = getattr(model, "model_name", None)
    info = model_info(name) if name in VARIANTS else None
    if input_size is None:
        spec = getattr(model, "input_spec", None)
        if spec is None:
            raise ValueError("input_size is required for a model that has no input_spec")
        input_size = spec.input_size  # the resolved config's: overrides of img_size / num_frames included
    param = next(model.parameters())
    x = torch.zeros(batch_size, *input_size, device=param.device, dtype=param.dtype)
    total, by_stage = count_macs(model, x)
    stages, counted = {}, set()
    for name, mod in stage_modules(model):
        own = [p for p in mod.parameters() if id(p) not in counted]
        counted.update(id(p) for p in own)
        stages[name] = (sum(p.numel() for p in own), by_stage.get(name, 0) // batch_size)
    params = sum(p.numel() for p in model.parameters())
    rest = (params - sum(p for p, _ in stages.values()), by_stage.get(OTHER, 0) // batch_size)
    if any(rest):
        stages[OTHER] = rest
    name = getattr(model, "model_name", type(model).__name__)
    # The paper's figures describe the variant at its own input size and head; say nothing beside other sizes.
    default_size = info is not None and tuple(input_size) == tuple(info.input_size)
    same_arch = not (set(overrides) & {"img_size", "num_frames", "num_classes", "window_size"})
    if not (default_size and same_arch):
        info = None
    return ProfileResult(
        name=name,
        input_size=tuple(input_size),
        params=params,
        macs=total // batch_size,
        stages=stages,
        paper_params=info.paper_params if info else None,
        paper_macs=info.paper_macs if info else None,
    )
