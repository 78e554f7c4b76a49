"""Model weights in and out: read a file (safetensors, weights-only torch, .npz), detect its layout (vitkit,
official, timm, torchvision, Hugging Face, OpenMMLab, JAX), map the keys, resample tables, and load through the
one policy (:func:`load_weights`). A run's *training state* (optimiser, RNG, step) is :mod:`vitkit.engine.checkpoint`;
*activation* checkpointing is ``model.set_grad_checkpointing()``."""
from . import heads, jax_vit, mm, mvit, swin, uniformer, vit  # noqa: F401  (register the converters; heads first)
from .base import (
    CheckpointError,
    HEAD_POLICIES,
    LoadReport,
    classifier_keys,
    convert_state_dict,
    from_official,
    load_checkpoint,
    load_weights,
    read_state_dict,
    register_adapter,
    register_converter,
    register_official,
    save_weights,
)

__all__ = [
    "CheckpointError", "HEAD_POLICIES", "LoadReport", "classifier_keys", "convert_state_dict", "from_official",
    "load_checkpoint", "load_weights",
    "read_state_dict", "register_adapter", "register_converter", "register_official", "save_weights",
]
