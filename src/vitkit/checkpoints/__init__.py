"""Checkpoint loading: detect the layout (vitkit, official, timm, torchvision, Hugging Face), map keys, resample."""
from . import jax_vit, mm, mvit, swin, uniformer, vit  # noqa: F401  (register the converters)
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
