"""Tensors a backward rebuilds from what it keeps anyway, instead of keeping them too (saved-tensor hooks).

A pre-norm block's first products keep their input, the normalised tokens, for their weight gradients, while the
LayerNorm keeps its own input for its backward: the tokens can be made again from that. Inside
:func:`rebuilt_when_saved` an op that saves a given tensor keeps a recipe instead, and the backward runs the recipe
(bit for bit the same tensor) when it needs it; :func:`normed` does this for a LayerNorm before its products. ViT's,
Swin's (the normalised tokens padded and gathered into windows) and MViT's blocks use it for attention's input
(MViT's pooled shortcut projection reads the same tokens).

Measured (``benchmarks/bench_allocator.py --setting rebuild``, batch 8 or one 16x224 clip, one Sapphire Rapids
thread, CPU time; peak of a steady-state step, kept -> rebuilt; step-time ratio with its spread over the rounds):
ViT-S/16 bf16 307.5 -> 293.6 MiB (timm's 304.9) at 0.96x [0.82-1.07] and 1.01x [0.85-1.16] in two runs, fp32
459.3 -> 431.6 at 1.00x; ViT-B/16 bf16 619.1 -> 591.4 and fp32 922.7 -> 867.3, both 1.00x; MViTv2-T fp32
1033.0 -> 993.9 at 1.01x; MViT-B 16x4 fp32 980.1 -> 911.1 at 1.00x; Swin-T fp32 840.5 -> 799.2 at 1.04x [0.91-1.13]
and bf16 456.3 -> 435.6 at 0.99x; Video Swin-T 16x224 fp32 1304.2 -> 1260.5 at 1.03x and bf16 683.9 -> 662.6 at
1.01x. Rebuilding attention's output (the
projection's input) from the probabilities and values instead saved as much at 0.96-0.98x: one more product per
block against one more LayerNorm (``benchmarks/TRAINING_HISTORY.md``, 2026-12-05, tenth session).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, ContextManager, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fused import is_tracing
from .switch import Switch

_REBUILD = Switch()


def rebuild_saved_inputs(enabled: bool) -> ContextManager[None]:
    """Turn :func:`rebuilds` on or off inside the block (for A/B measurements; on by default)."""
    return _REBUILD.set(enabled)


def rebuilds() -> bool:
    """Whether a tensor made now may be rebuilt in the backward instead of kept: on, recording a graph, not
    traced, saved-tensor hooks allowed (``torch.func`` transforms forbid them) and none active (activation
    checkpointing's decide what its blocks keep; a recipe under them would keep its inputs alive past the
    checkpoint)."""
    return (_REBUILD.on and torch.is_grad_enabled() and not is_tracing()
            and torch._C._autograd._saved_tensors_hooks_is_enabled()
            and torch._C._autograd._top_saved_tensors_default_hooks(False) is None)


class _Recipe:
    """What a saved tensor is rebuilt from: ``rebuild()`` gives it, viewed as ``shape``."""

    __slots__ = ("rebuild", "shape")

    def __init__(self, rebuild: Callable[[], torch.Tensor], shape: torch.Size) -> None:
        self.rebuild, self.shape = rebuild, shape


@contextlib.contextmanager
def rebuilt_when_saved(t: torch.Tensor, rebuild: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Inside the block, an op that saves contiguous ``t`` for its backward (``t`` itself or a view of all of it)
    keeps ``rebuild`` instead and calls it in the backward; every other saved tensor is kept as it is.

    ``rebuild()`` must give ``t``'s values bit for bit from tensors the graph keeps anyway, and must not hold ``t``
    (nor may anything else, or ``t`` stays alive and nothing is saved); while a backward records a graph
    (``create_graph``) it runs with gradients on and must then be differentiable. Use it only where
    :func:`rebuilds`."""
    ptr, numel, dtype = t.data_ptr(), t.numel(), t.dtype  # not t itself: the hooks live as long as the graph

    def pack(saved: torch.Tensor):
        if (saved.data_ptr() == ptr and saved.numel() == numel and saved.dtype == dtype
                and saved.is_contiguous()):
            return _Recipe(rebuild, saved.shape)
        return saved

    def unpack(packed):
        return packed.rebuild().view(packed.shape) if isinstance(packed, _Recipe) else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def _plain_layer_norm(norm: nn.Module) -> bool:
    """A LayerNorm whose call is ``F.layer_norm`` with its parameters: no hooks that could change its output."""
    m = nn.modules.module
    return (type(norm) is nn.LayerNorm and not (norm._forward_hooks or norm._forward_pre_hooks)
            and not (m._global_forward_hooks or m._global_forward_pre_hooks))


def _layer_norm_as(x: torch.Tensor, norm: nn.LayerNorm, dtype: torch.dtype, amp_dtype: torch.dtype | None,
                   then: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """``then(norm(x))`` in ``dtype``, under the autocast of the forward that first made it (``amp_dtype``, or
    none)."""
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        y = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return (y if then is None else then(y)).to(dtype)


def normed(norm: nn.Module, x: torch.Tensor, one_product: bool,
           then: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, ContextManager[None]]:
    """``norm(x)`` for the products that come next (``then(norm(x))`` with ``then``: a rearrangement such as Swin's
    window partition, run again in the recipe), and the context to run them in.

    Where :func:`rebuilds` and ``norm`` is a plain LayerNorm, the products inside the context keep, instead of the
    normalised tokens, the recipe to normalise ``x`` again, which the LayerNorm keeps for its own backward anyway:
    their saved input costs no memory, for one more LayerNorm in the backward. Values and gradients are the same
    bit for bit. Under autocast a product keeps its own cast copy of its input, not the tokens; with
    ``one_product`` (the tokens feed one product of one weight block, as ViT's qkv) they come already in autocast's
    dtype, the cast it would make, so that copy is the tokens and is rebuilt too. With several products (or one
    split into blocks) that would sum their input gradients in bf16 where autocast sums them in float32, so there
    only float32 training rebuilds. On CPUs and CUDA only; elsewhere ``(norm(x), nullcontext())``."""
    device = x.device.type
    plain = not (rebuilds() and _plain_layer_norm(norm) and x.is_floating_point() and device in ("cpu", "cuda"))
    autocast = not plain and torch.is_autocast_enabled(device)
    y = norm(x)
    if then is not None:
        y = then(y)
    if plain or (autocast and not one_product):
        return y, contextlib.nullcontext()
    amp_dtype = torch.get_autocast_dtype(device) if autocast else None
    dtype = amp_dtype if autocast and y.dtype == torch.float32 else y.dtype
    y = y.to(dtype)
    return y, rebuilt_when_saved(y, functools.partial(_layer_norm_as, x, norm, dtype, amp_dtype, then))
