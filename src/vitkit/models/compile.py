"""``torch.compile`` as vitkit applies it: one home for the options, shared by training and benchmarks.

``dynamic=True`` so that a model seen at several input sizes (Swin and UniFormer at other resolutions, the last
short batch of an epoch) is traced once with symbolic shapes instead of recompiled per size
(``benchmarks/compile_audit.py`` counts the recompiles; what still recompiles, and why, is said in
:meth:`vitkit.models.swin.SwinBlock.window_attention`). The module is wrapped, not changed: its state dict keeps
its own key names (the wrapper's ``_orig_mod.`` prefix never reaches a checkpoint because callers keep and save
the unwrapped module).

Inductor option ``strict_output_strides``: with symbolic shapes, Inductor (torch 2.14) sorts the strides of a
view it outputs (a tensor kept for backward) with plain sympy comparisons and fails on channels-last views such
as UniFormer's token <-> map views ("cannot determine truth value of Relational: 32*((s53//4)) < 32"); with the
option set it keeps such views' strides as they are instead of sorting them.
"""
from __future__ import annotations

import torch.nn as nn

#: Inductor options every vitkit compile passes (see the module docstring)
INDUCTOR_OPTIONS = {"strict_output_strides": True}


def maybe_compile(module: nn.Module, enabled: bool = True) -> nn.Module:
    """``torch.compile(module, dynamic=True)`` with :data:`INDUCTOR_OPTIONS` when ``enabled``, else ``module``."""
    if not enabled:
        return module
    import torch

    return torch.compile(module, dynamic=True, options=dict(INDUCTOR_OPTIONS))
