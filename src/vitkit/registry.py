"""Model registry: named variants are frozen config instances plus the metadata of the paper table they reproduce.

``register_model`` records a variant, ``create_model`` builds it (with config overrides and optional weights),
``list_models`` lists names by glob pattern, ``model_info`` returns the metadata.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about one registered variant.

    ``input_size`` is (C, H, W) for images and (C, T, H, W) for video. ``paper_params`` is in millions and
    ``paper_macs`` in G multiply-accumulates per view at ``input_size``; ``follows`` says which source
    (paper table or official config) the variant reproduces when they disagree.
    """

    name: str
    family: str
    config: Any
    builder: Callable[[Any], nn.Module]
    input_size: tuple[int, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    paper: str = ""
    follows: str = ""
    paper_params: float | None = None
    paper_macs: float | None = None
    top1: float | None = None
    demo: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: a small input (no batch) the registry-wide tests run this variant at; None: (3, 64, 64) / (3, 4, 64, 64)
    test_input_size: tuple[int, ...] | None = None

    @property
    def is_video(self) -> bool:
        return len(self.input_size) == 4


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a variant to the registry. Names are unique."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    if not dataclasses.is_dataclass(info.config):
        raise TypeError(f"config of {info.name!r} must be a dataclass instance, got {type(info.config).__name__}")
    _REGISTRY[info.name] = info
    return info


def _ensure_loaded() -> None:
    # The family modules register their variants on import.
    import vitkit.models  # noqa: F401


def list_models(pattern: str = "*", *, family: str | None = None, include_demo: bool = True) -> list[str]:
    """Registered names matching a glob ``pattern`` (sorted)."""
    _ensure_loaded()
    names = [
        n
        for n, i in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern)
        and (family is None or i.family == family)
        and (include_demo or not i.demo)
    ]
    return sorted(names)


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered variant; unknown names raise with the closest names suggested."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see vitkit.list_models()"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def resolve_config(name: str, **overrides: Any) -> Any:
    """The variant's config with ``overrides`` applied; unknown fields raise naming the valid ones."""
    info = model_info(name)
    valid = {f.name for f in dataclasses.fields(info.config)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise TypeError(f"{name}: unknown config field(s) {bad}; valid fields: {sorted(valid)}")
    cfg = dataclasses.replace(info.config, **overrides)
    if overrides:
        from vitkit.models.config_check import check_config

        check_config(cfg, prefix=f"{name}: ")
    return cfg


def create_model(name: str, *, weights: str | None = None, pretrained: bool | str = False, strict: bool = True,
                 features_only: bool = False, out_indices: Any = None, **overrides: Any) -> nn.Module:
    """Build a registered variant.

    ``overrides`` replace config fields (``num_classes=10``, ``drop_path_rate=0.1``, ``img_size=384`` ...).
    ``weights`` is a local checkpoint in any supported layout (vitkit safetensors, official, timm, torchvision,
    Hugging Face); it is converted, resampled where the size differs, and loaded strictly unless ``strict=False``.
    ``features_only=True`` returns the backbone view (maps at several strides, ``model.feature_info``; see
    :mod:`vitkit.models.backbone`), with ``out_indices`` selecting the levels; weights load before the conversion.
    ``pretrained`` (``True`` for the variant's default tag, or a tag such as ``"in1k"``) downloads published
    weights into the cache (:mod:`vitkit.weights`) and loads them; the model takes the file's class count unless
    ``num_classes`` is given, in which case the classifier is replaced by a zero-initialised one. A full
    ``"other_model.tag"`` of the same family loads another variant's weights (resampled; image weights into a video
    model are inflated, e.g. ``create_model("swin3d_tiny", pretrained="swin_tiny_patch4_window7_224.ms_in1k")``).
    """
    info = model_info(name)
    if pretrained and weights is not None:
        raise ValueError("give either weights= (a local file) or pretrained= (a published tag), not both")
    spec = None
    if pretrained:
        from vitkit.weights import get_weights

        if isinstance(pretrained, str) and pretrained.partition(".")[0] not in ("", name) and "." in pretrained:
            spec = get_weights(pretrained)  # another variant's weights: resampled or inflated when loaded
        else:
            spec = get_weights(name, pretrained)
            overrides = {**spec.overrides(), **overrides}
    cfg = resolve_config(name, **overrides)
    model = info.builder(cfg)
    model.model_name = name
    model.info = info
    if spec is not None:
        from vitkit.weights import load_pretrained

        model.pretrained_report = load_pretrained(model, spec)
        model.pretrained_weights = spec
    elif weights is not None:
        from vitkit.checkpoints import load_checkpoint

        load_checkpoint(model, weights, strict=strict)
    if features_only:
        from vitkit.models.backbone import as_backbone

        return as_backbone(model, out_indices)
    if out_indices is not None:
        raise TypeError("out_indices needs features_only=True")
    return model
