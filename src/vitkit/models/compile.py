"""``torch.compile`` as vitkit applies it: one home for the options, shared by training and benchmarks.

``dynamic=True`` so that a model seen at several input sizes (Swin and UniFormer at other resolutions, the last
short batch of an epoch) is traced once with symbolic shapes instead of recompiled per size. The module is
wrapped, not changed: its state dict keeps its own key names (the wrapper's ``_orig_mod.`` prefix never reaches a
checkpoint because callers keep and save the unwrapped module).
"""
from __future__ import annotations

import torch.nn as nn


def maybe_compile(module: nn.Module, enabled: bool = True) -> nn.Module:
    """``torch.compile(module, dynamic=True)`` when ``enabled``, else ``module`` unchanged."""
    if not enabled:
        return module
    import torch

    return torch.compile(module, dynamic=True)
