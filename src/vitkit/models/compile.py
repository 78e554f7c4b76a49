"""``torch.compile`` as vitkit applies it: one home for the options, shared by training and benchmarks.

Dynamic shapes: by default torch's own "automatic dynamic" (``dynamic=None``): the first input size is compiled
with static shapes, and only when a size changes is the graph compiled once more with symbolic sizes, which then
serves every later size. Training at a fixed size (the trainer drops the last short batch; evaluation runs the
eager model) therefore compiles one static graph. ``dynamic=True`` (``train.compile: dynamic``, ``maybe_compile(m,
dynamic=True)``) traces with symbolic sizes from the first call. Measured (``benchmarks/bench_compile_modes.py``,
``benchmarks/results/compile_modes_amx.json``; Swin-T, batch 2 at 224, fp32, one thread, Sapphire Rapids), the
static first compile cost 49-53 s of CPU in the process plus 100 s in Inductor's C++ compiler, and then steps of
0.79-0.84 s; ``dynamic=True`` cost 485 s plus 234 s, 4.8x as much, and then steps of 0.99 s, 1.2x slower (not
profiled; with symbolic sizes the window orders, shift masks and relative-position index are computed in the graph
instead of being folded into constants, and kernels index with runtime sizes). Automatic and static compile the
same first graph; under automatic, a size change then costs about one ``dynamic=True`` compile. MViTv2-T, the
same: ``dynamic=True`` 768 s plus 223 s, then steps of 1.76-1.86 s; static 108 s plus 134 s, then 996 ms
(``benchmarks/results/train_compiled_amx_mvitv2_tiny.json``).

``dynamic=True`` remains what a model fed many sizes from the start wants (one symbolic compile instead of a
static one and then a symbolic one). vitkit's families keep one graph across input sizes under it
(``benchmarks/compile_audit.py`` counts the recompiles and traces with ``dynamic=True`` explicitly; what still
recompiles, and why, is said in :meth:`vitkit.models.swin.SwinBlock.window_attention`). The module is wrapped, not
changed: its state dict keeps its own key names (the wrapper's ``_orig_mod.`` prefix never reaches a checkpoint
because callers keep and save the unwrapped module).

Inductor option ``strict_output_strides``: with symbolic shapes, Inductor (torch 2.14) sorts the strides of a
view it outputs (a tensor kept for backward) with plain sympy comparisons and fails on channels-last views such
as UniFormer's token <-> map views ("cannot determine truth value of Relational: 32*((s53//4)) < 32"); with the
option set it keeps such views' strides as they are instead of sorting them. It is passed in every mode (the
automatic mode's second compile is symbolic).
"""
from __future__ import annotations

import torch.nn as nn

#: Inductor options every vitkit compile passes (see the module docstring)
INDUCTOR_OPTIONS = {"strict_output_strides": True}

#: values of ``train.compile``: off, on (torch's automatic dynamic shapes), on with symbolic sizes from the start
COMPILE_MODES = (False, True, "dynamic")


def maybe_compile(module: nn.Module, enabled: bool | str = True, dynamic: bool | None = None) -> nn.Module:
    """``torch.compile(module, dynamic=dynamic)`` with :data:`INDUCTOR_OPTIONS` when ``enabled``, else ``module``.

    ``dynamic=None`` (default): torch's automatic dynamic shapes (static first; symbolic after a size change);
    ``True``: symbolic sizes from the first call; ``False``: static, a recompile per size. ``enabled="dynamic"``
    (the ``train.compile: dynamic`` recipe value) means ``dynamic=True``.
    """
    if enabled not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {enabled!r}")
    if enabled is False:
        return module
    import torch

    if enabled == "dynamic":
        dynamic = True
    return torch.compile(module, dynamic=dynamic, options=inductor_options())


def inductor_options() -> dict[str, object]:
    """:data:`INDUCTOR_OPTIONS` that this torch's Inductor knows: torch.compile refuses an unknown option, and an
    older torch than this project's pins (the lent GPU machine's 2.11, say) may lack ``strict_output_strides``."""
    from torch._inductor import config

    return {k: v for k, v in INDUCTOR_OPTIONS.items() if hasattr(config, k)}
