"""UniFormer checkpoints: the official Sense-X layouts, official configs, and image-to-video inflation.

vitkit's UniFormer keeps the official module names (``patch_embed1..4``, ``blocks1..4.N``, ``norm``, ``head``,
``aux_head``), so official image and video checkpoints load as they are. Loading 2-D (image) weights into a
3-D (video) model inflates them the official way (``inflate_weight`` in the video code): every 2-D kernel is
repeated over the video kernel's depth and divided by it, or, with ``center=True``, placed in the central
temporal slice with zeros around it. Parameters of rank <= 2 whose shapes differ (a 1000-class head in a
400-class model) are left out, as the official loader does.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Mapping

import torch
import torch.nn as nn

from vitkit.models.uniformer import UniFormer, UniFormerConfig
from vitkit.models.variants import VARIANTS

from .base import CheckpointError, StateDict, load_checkpoint, register_adapter, register_official
from .inflate import inflate_weight

__all__ = ["inflate_weight", "inflate_image_to_video", "image_config_from_official", "video_config_from_official"]


def inflate_image_to_video(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, center: bool = False, inflated: list[str] | None = None
) -> StateDict:
    """Image (2-D) UniFormer weights -> the video ``model``'s shapes.

    Kernels whose rank is one below the model's are inflated over time (``center`` as in :func:`inflate_weight`);
    mismatched tensors of rank <= 2 (e.g. the classifier of another class count) are dropped with a warning;
    everything else passes through unchanged, so a strict load still reports keys that do not belong.
    Names of inflated tensors are appended to ``inflated`` when given.
    """
    own = model.state_dict()
    out: StateDict = {}
    dropped = []
    for k, v in state_dict.items():
        target = own.get(k)
        if target is None or target.shape == v.shape:
            out[k] = v
        elif target.ndim == v.ndim + 1 and target.ndim >= 3 and target.shape[:2] == v.shape[:2] \
                and target.shape[3:] == v.shape[2:]:
            out[k] = inflate_weight(v, target.shape[2], center)
            if inflated is not None:
                inflated.append(k)
        elif target.ndim <= 2:
            dropped.append(f"{k} {tuple(v.shape)} -> {tuple(target.shape)}")
        else:
            out[k] = v  # left for the shape check to report
    if dropped:
        warnings.warn(f"inflation left out parameters of another shape: {', '.join(dropped)}", stacklevel=2)
    return out


@register_adapter("uniformer")
def adapt(sd: StateDict, model: nn.Module, resampled: list[str]) -> StateDict:
    """Inflate image weights loaded into a video model (the report lists them as resampled)."""
    w = sd.get("patch_embed1.proj.weight", sd.get("patch_embed1.proj.0.weight"))
    if getattr(model, "spatial_rank", 2) == 3 and w is not None and w.ndim == 4:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mismatched heads stay in and are reported by the loader
            inflated: list[str] = []
            out = inflate_image_to_video(sd, model, center=False, inflated=inflated)
        for k, v in sd.items():
            out.setdefault(k, v)
        resampled += [f"{k} (inflated 2-D -> 3-D)" for k in inflated]
        return out
    return sd


# -- official configs -------------------------------------------------------------------------------------------
_IMAGE_KEYS = {
    "depth", "img_size", "in_chans", "num_classes", "embed_dim", "head_dim", "mlp_ratio", "qkv_bias", "qk_scale",
    "drop_rate", "attn_drop_rate", "drop_path_rate", "conv_stem", "return_dense",
}
_IMAGE_IGNORED = {"norm_layer", "mix_token", "pretrained", "representation_size"}


def _flags_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the official constructors set through globals or options: LayerScale and the token-labeling head."""
    return {
        "layer_scale": any(k.startswith(("blocks3.", "blocks4.")) and k.endswith("gamma_1") for k in sd),
        "layer_scale_local": any(k.startswith(("blocks1.", "blocks2.")) and k.endswith("gamma_1") for k in sd),
        "return_dense": "aux_head.weight" in sd,
    }


def image_config_from_official(kwargs: Mapping[str, Any], sd: Mapping[str, torch.Tensor] | None = None):
    """A :class:`UniFormerConfig` from the official image ``UniFormer(...)`` keyword arguments."""
    bad = sorted(set(kwargs) - _IMAGE_KEYS - _IMAGE_IGNORED)
    if bad:
        raise ValueError(f"unknown official UniFormer argument(s) {bad}; known: {sorted(_IMAGE_KEYS)}")
    if kwargs.get("representation_size"):
        raise ValueError("representation_size is not supported (no released UniFormer uses a pre-logits layer)")
    args: dict[str, Any] = {k: v for k, v in kwargs.items() if k in _IMAGE_KEYS}
    for k in ("depth", "embed_dim"):
        if k in args:
            args[k] = tuple(args[k])
    if sd is not None:
        args = {**_flags_from_state_dict(sd), **args}
    return UniFormerConfig(**args)


def _nested(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``{"UNIFORMER": {...}}`` or flattened ``{"UNIFORMER.DEPTH": ...}`` keys."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(v, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(v)
        else:
            node[parts[-1]] = dict(v) if isinstance(v, Mapping) else v
    return out


def video_config_from_official(cfg: Mapping[str, Any] | str | os.PathLike):
    """A video :class:`UniFormerConfig` from the official yacs configuration (nested dict or YAML path).

    Unset keys take the official defaults (``slowfast/config/defaults.py``): UNIFORMER depth 5-8-20-7, widths
    64-128-320-512, head dim 64, MLP ratio 4, qkv bias, drop-path 0.1; MODEL.NUM_CLASSES 400; DATA.NUM_FRAMES 8,
    TRAIN_CROP_SIZE 224, INPUT_CHANNEL_NUM [3].
    """
    if isinstance(cfg, (str, os.PathLike)):
        import yaml

        with open(cfg) as f:
            cfg = yaml.safe_load(f) or {}
    c = _nested(cfg)
    u, m, d = c.get("UNIFORMER", {}), c.get("MODEL", {}), c.get("DATA", {})
    if u.get("SPLIT", False):
        raise NotImplementedError("UNIFORMER.SPLIT (divided space/time attention, an ablation) is not supported")
    if u.get("REPRESENTATION_SIZE"):
        raise ValueError("UNIFORMER.REPRESENTATION_SIZE is not supported (no released model uses it)")
    return UniFormerConfig(
        depth=tuple(u.get("DEPTH", (5, 8, 20, 7))),
        embed_dim=tuple(u.get("EMBED_DIM", (64, 128, 320, 512))),
        head_dim=int(u.get("HEAD_DIM", 64)),
        mlp_ratio=float(u.get("MLP_RATIO", 4.0)),
        qkv_bias=bool(u.get("QKV_BIAS", True)),
        qk_scale=u.get("QKV_SCALE"),
        drop_rate=float(u.get("DROPOUT_RATE", 0.0)),
        attn_drop_rate=float(u.get("ATTENTION_DROPOUT_RATE", 0.0)),
        drop_path_rate=float(u.get("DROP_DEPTH_RATE", 0.1)),
        downsample_3x2x2=bool(u.get("STD", False)),
        num_classes=int(m.get("NUM_CLASSES", 400)),
        img_size=int(d.get("TRAIN_CROP_SIZE", 224)),
        num_frames=int(d.get("NUM_FRAMES", 8)),
        in_chans=int(list(d.get("INPUT_CHANNEL_NUM", [3]))[0]),
    )


def _is_video_config(config: Any) -> bool:
    if isinstance(config, (str, os.PathLike)):
        return True
    return any(str(k).split(".")[0] in ("UNIFORMER", "MODEL", "DATA") for k in config)


@register_official("uniformer")
def build_official(sd: StateDict, config: Any) -> nn.Module:
    """The vitkit UniFormer an official config describes, with the official ``sd`` loaded strictly.

    ``config``: for the image code the ``UniFormer(...)`` keyword arguments (LayerScale and the token-labeling
    head are read off the checkpoint, as the official code sets them outside the constructor); for the video
    code the yacs configuration as a nested dict (``UNIFORMER``, ``MODEL``, ``DATA``) or a YAML path; or the
    name of a registered vitkit UniFormer variant.
    """
    if config is None:
        raise ValueError("from_official('uniformer', ...) needs the official config: head_dim cannot be read "
                         "off the weights (a wrong head_dim loads but gives wrong outputs)")
    if isinstance(config, str) and config in VARIANTS and VARIANTS[config].family == "uniformer":
        cfg = VARIANTS[config].config
        if "head.weight" in sd:
            cfg = dataclasses.replace(cfg, num_classes=sd["head.weight"].shape[0])
    elif _is_video_config(config):
        cfg = video_config_from_official(config)
    else:
        cfg = image_config_from_official(config, sd)
    w = sd.get("patch_embed1.proj.weight", sd.get("patch_embed1.proj.0.weight"))
    if w is not None and (w.ndim == 5) != (cfg.num_frames is not None):
        kind = "video" if w.ndim == 5 else "image"
        raise CheckpointError(f"the checkpoint holds {kind} weights (patch_embed1 kernel {tuple(w.shape)}) but the "
                              f"config describes {'a video' if cfg.num_frames else 'an image'} model")
    model = UniFormer(cfg)
    load_checkpoint(model, sd, strict=True)
    return model.eval()
