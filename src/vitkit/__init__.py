"""vitkit: vision transformers for images and video - ViT, Swin, MViT, UniFormer.

The public names below are imported on first use (PEP 562), so ``vitkit --help`` and other light commands start
without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "checkpoints": ("vitkit.checkpoints", None),
    "create_model": ("vitkit.registry", "create_model"),
    "list_models": ("vitkit.registry", "list_models"),
    "model_info": ("vitkit.registry", "model_info"),
    "register_model": ("vitkit.registry", "register_model"),
    "load_checkpoint": ("vitkit.checkpoints", "load_checkpoint"),
    "load_weights": ("vitkit.checkpoints", "load_weights"),
    "input_spec": ("vitkit.registry", "input_spec"),
    "InputSpec": ("vitkit.models.input_spec", "InputSpec"),
    "profile": ("vitkit.analysis.profile", "profile"),
}
__all__ = ["InputSpec", "checkpoints", "create_model", "input_spec", "list_models", "load_checkpoint", "load_weights",
           "model_info", "profile", "register_model"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vitkit' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
