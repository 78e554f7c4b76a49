"""A tensor that a compiled CPU graph writes out once instead of recomputing it inside every kernel that reads it.

Inductor inlines a cheap producer (a gather, integer arithmetic on indices) into each consumer's kernel. For a
small tensor that a large one reads many times over, that multiplies the producer's work: Swin's relative
position bias is (heads, N, N), gathered from its table, and the shift mask (windows, N, N) is built from index
arithmetic, and both are added to scores of (batch x windows, heads, N, N). Compiled, Video Swin-T's fused
bias-mask-softmax kernels re-gathered the bias and rebuilt the mask for every score, 32 scalar loads per
vector: about 900 ms of a 2.2 s bf16 training step at one 16x224 clip, where eager gathers the bias once and
reads the cached mask (one Sapphire Rapids thread, Inductor's kernel profile). :func:`materialized` passes such
a tensor through an operator Inductor does not look into (``vitkit::materialize``, a copy), so it is computed
once into a buffer and the consumers load it.
"""
from __future__ import annotations

from typing import ContextManager

import torch

from .fused import is_compiling
from .switch import Switch


# explicit schema: torch before 2.5 cannot infer one from this module's postponed (string) annotations
@torch.library.custom_op("vitkit::materialize", mutates_args=(), schema="(Tensor x) -> Tensor")
def _materialize(x: torch.Tensor) -> torch.Tensor:
    return x.clone()  # an operator's output may not alias its input


@_materialize.register_fake
def _(x):
    return torch.empty_like(x)


def _backward(ctx, grad):
    return grad


_materialize.register_autograd(_backward)

#: whether compiled CPU graphs take ``vitkit::materialize`` (:func:`compiled_materialize`)
_MATERIALIZE = Switch()


def compiled_materialize(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, :func:`materialized` passes tensors through the operator under torch.compile on the CPU
    (``enabled``, the default) or returns them as they are (for the A/B of ``benchmarks/bench_allocator.py
    --setting compiled_materialize``; TorchDynamo guards on the setting, so each side compiles its own graph)."""
    return _MATERIALIZE.set(enabled)


def materialized(x: torch.Tensor) -> torch.Tensor:
    """``x``, computed once into its own buffer when torch.compile traces it for the CPU (module doc); as it is
    everywhere else (eager, other devices, torch.export and TorchScript)."""
    if _MATERIALIZE.on and x.device.type == "cpu" and is_compiling():
        return torch.ops.vitkit.materialize(x)
    return x
