"""The model families. Importing a family module registers its variants."""
from . import mvit, swin, uniformer, vit  # noqa: F401
from .base import VitkitModel

__all__ = ["VitkitModel"]
