"""The variant catalogue: each family declares its named variants here (frozen config + the paper's metadata).

:func:`declare` is the one registration helper of every family: it fills the family's preprocessing defaults
(``builder.input_defaults(cfg)``) under what the variant states and adds a :class:`ModelInfo` to
:data:`VARIANTS`. :mod:`vitkit.registry` is the public face (``list_models``, ``create_model``); it reads this
catalogue, so the model families never import the registry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from .input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about one registered variant.

    The input geometry is the config's (:attr:`spec`, :attr:`input_size`: (C, H, W) for images and
    (C, T, H, W) for video); ``mean`` / ``std`` / ``interpolation`` / ``crop_pct`` / ``sampling_rate`` /
    ``test_size`` are the variant's preprocessing. ``paper_params`` is in millions and ``paper_macs`` in G
    multiply-accumulates per view at ``input_size``; ``follows`` says which source (paper table or official
    config) the variant reproduces when they disagree.
    """

    name: str
    family: str
    config: Any
    builder: Callable[[Any], nn.Module]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    sampling_rate: int | None = None  # video: tau of the variant's T x tau clips
    test_size: tuple[int, int] | None = None  # (H, W) evaluated at; None: the training size
    paper: str = ""
    follows: str = ""
    paper_params: float | None = None
    paper_macs: float | None = None
    top1: float | None = None
    demo: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: a small input (no batch) the registry-wide tests run this variant at; None: (3, 64, 64) / (3, 4, 64, 64)
    test_input_size: tuple[int, ...] | None = None

    def spec_for(self, cfg: Any = None) -> InputSpec:
        """The input specification of this variant built with ``cfg`` (default: the registered config)."""
        return input_spec(self.builder, self.config if cfg is None else cfg, self)

    @property
    def spec(self) -> InputSpec:
        return self.spec_for()

    @property
    def input_size(self) -> tuple[int, ...]:
        return self.spec.input_size

    @property
    def is_video(self) -> bool:
        return self.spec.is_video


#: name -> ModelInfo of every declared variant (the family modules fill it on import)
VARIANTS: dict[str, ModelInfo] = {}


def add_variant(info: ModelInfo) -> ModelInfo:
    """Add a variant to the catalogue. Names are unique; the config is a dataclass instance."""
    if info.name in VARIANTS:
        raise ValueError(f"model {info.name!r} is already registered")
    if not dataclasses.is_dataclass(info.config):
        raise TypeError(f"config of {info.name!r} must be a dataclass instance, got {type(info.config).__name__}")
    VARIANTS[info.name] = info
    return info


def declare(builder: type, name: str, cfg: Any, **meta: Any) -> ModelInfo:
    """Register variant ``name`` of ``builder``'s family: ``meta`` over the family's preprocessing defaults."""
    for key, value in builder.input_defaults(cfg).items():
        meta.setdefault(key, value)
    return add_variant(ModelInfo(name=name, family=builder.family, config=cfg, builder=builder, **meta))


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Normalisation values for ``channels``: as given, or their mean repeated when the count differs."""
    if len(values) == channels:
        return tuple(values)
    return (sum(values) / len(values),) * channels


def input_spec(builder: Any, cfg: Any, info: ModelInfo | None = None) -> InputSpec:
    """The spec of ``builder`` (a model class) built with ``cfg``: the family's geometry rule applied to the
    config, with the variant's preprocessing (``info``) or, without one, the family's defaults."""
    geometry = getattr(builder, "input_geometry", None)
    if geometry is None:
        raise TypeError(f"{getattr(builder, '__name__', builder)} has no input_geometry(cfg): "
                        "a model family derives its input from its config (see vitkit.models.base.VitkitModel)")
    channels, frames, (h, w) = geometry(cfg)
    if info is not None:
        pre = {k: getattr(info, k) for k in ("mean", "std", "interpolation", "crop_pct", "sampling_rate")}
        registered = geometry(info.config)
        pre["test_size"] = info.test_size if registered == (channels, frames, (h, w)) else None
    else:
        pre = {k: v for k, v in builder.input_defaults(cfg).items() if k in
               ("mean", "std", "interpolation", "crop_pct", "sampling_rate", "test_size")}
    mean, std = pre.pop("mean", IMAGENET_MEAN), pre.pop("std", IMAGENET_STD)
    rate = pre.pop("sampling_rate", None)
    return InputSpec(channels=channels, height=h, width=w, num_frames=frames,
                     sampling_rate=(rate or 1) if frames is not None else None,
                     mean=_per_channel(mean, channels), std=_per_channel(std, channels), **pre)
