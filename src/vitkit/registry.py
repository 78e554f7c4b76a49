"""Model registry: named variants are frozen config instances plus the metadata of the paper table they reproduce.

The families declare their variants in :mod:`vitkit.models.variants`; this module is the public face:
``register_model`` adds a variant, ``create_model`` builds one (config overrides, optional weights through the
one loading function), ``list_models`` lists names by glob pattern, ``model_info`` returns the metadata and
``input_spec`` the input a variant expects.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import warnings
from typing import Any

import torch.nn as nn

from vitkit import models  # noqa: F401  (importing the families declares their variants)
from vitkit.checkpoints import load_weights
from vitkit.models.backbone import as_backbone
from vitkit.models.config_check import check_config
from vitkit.models.input_spec import InputSpec
from vitkit.models.variants import VARIANTS as _REGISTRY
from vitkit.models.variants import ModelInfo, add_variant
from vitkit.weights import get_weights, load_pretrained

__all__ = ["ModelInfo", "create_model", "input_spec", "list_models", "model_info", "register_model", "resolve_config"]


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a variant to the registry. Names are unique."""
    return add_variant(info)


def list_models(pattern: str = "*", *, family: str | None = None, include_demo: bool = True) -> list[str]:
    """Registered names matching a glob ``pattern`` (sorted)."""
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
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see vitkit.list_models()"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def resolve_config(name: str, **overrides: Any) -> Any:
    """The variant's config with ``overrides`` applied; unknown fields raise naming the valid ones."""
    info = model_info(name)
    for old, new in getattr(type(info.config), "RENAMED", {}).items():
        if old in overrides:
            warnings.warn(f"{name}: config field {old!r} is now {new!r}", DeprecationWarning, stacklevel=3)
            overrides[new] = overrides.pop(old)
    valid = {f.name for f in dataclasses.fields(info.config)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise TypeError(f"{name}: unknown config field(s) {bad}; valid fields: {sorted(valid)}")
    cfg = dataclasses.replace(info.config, **overrides)
    if overrides:
        check_config(cfg, prefix=f"{name}: ")
    return cfg


def input_spec(name: str, **overrides: Any) -> InputSpec:
    """The input specification of variant ``name`` built with config ``overrides`` (no model is built)."""
    return model_info(name).spec_for(resolve_config(name, **overrides))


def create_model(name: str, *, weights: str | None = None, pretrained: bool | str = False, strict: bool = True,
                 head: str = "strict", features_only: bool = False, out_indices: Any = None,
                 **overrides: Any) -> nn.Module:
    """Build a registered variant; ``model.input_spec`` says what input it expects.

    ``overrides`` replace config fields (``num_classes=10``, ``drop_path_rate=0.1``, ``img_size=384`` ...).
    ``weights`` is a local checkpoint in any supported layout (vitkit safetensors, official, timm, torchvision,
    Hugging Face); it is converted, resampled where the size differs, and loaded by
    :func:`vitkit.checkpoints.load_weights`: strictly unless ``strict=False``; ``head`` ("strict", "reset",
    "match", "keep") says what happens to a classifier of another class count.
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
    published = None
    if pretrained:
        if isinstance(pretrained, str) and pretrained.partition(".")[0] not in ("", name) and "." in pretrained:
            published = get_weights(pretrained)  # another variant's weights: resampled or inflated when loaded
        else:
            published = get_weights(name, pretrained)
            overrides = {**published.overrides(), **overrides}
    cfg = resolve_config(name, **overrides)
    model = info.builder(cfg)
    model.model_name = name
    model.input_spec = info.spec_for(cfg)
    if published is not None:
        model.pretrained_report = load_pretrained(model, published)
        model.pretrained_weights = published
    elif weights is not None:
        load_weights(model, weights, head=head, strict=strict)
    if features_only:
        return as_backbone(model, out_indices)
    if out_indices is not None:
        raise TypeError("out_indices needs features_only=True")
    return model
