"""vitkit: vision transformers for images and video - ViT, Swin, MViT, UniFormer."""
from . import checkpoints
from .analysis.profile import profile
from .checkpoints import load_checkpoint
from .registry import create_model, list_models, model_info, register_model

__version__ = "0.1.0"
__all__ = ["checkpoints", "create_model", "list_models", "load_checkpoint", "model_info", "profile", "register_model"]
