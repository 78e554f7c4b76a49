"""Swin checkpoint layouts: official microsoft/Swin-Transformer (= vitkit's names), timm, torchvision
(``swin_t/s/b`` and ``swin3d_*``) and Hugging Face ``SwinForImageClassification`` (transformers 4.x and 5.x).

vitkit keeps the official key names (patch merging at the end of each stage). The buffers
``relative_position_index`` and ``attn_mask`` that official, timm and torchvision state dicts carry are dropped:
vitkit recomputes them for every size (:mod:`vitkit.layers.windows`). Bias tables made for another window are
resampled bicubically (trilinearly in 3-D), as the paper fine-tunes at 384.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from vitkit.layers import resample_pos_embed, resample_rel_pos_table
from vitkit.models.swin import SwinConfig, SwinTransformer

from .base import (
    HF_QKV_NAMES,
    StateDict,
    fuse_qkv,
    load_checkpoint,
    register_adapter,
    register_converter,
    register_official,
    rename_prefix,
)

_BUFFERS = ("relative_position_index", "attn_mask")


def _drop_buffers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in _BUFFERS}


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return "layers.0.downsample.reduction.weight" in sd and "head.fc.weight" not in sd


def _is_timm(sd: Mapping[str, torch.Tensor]) -> bool:
    return "layers.0.blocks.0.attn.qkv.weight" in sd and "layers.0.downsample.reduction.weight" not in sd and (
        "layers.1.downsample.reduction.weight" in sd or "head.fc.weight" in sd
    )


def _is_torchvision_2d(sd: Mapping[str, torch.Tensor]) -> bool:
    return "features.0.0.weight" in sd and "features.1.0.attn.qkv.weight" in sd


def _is_torchvision_3d(sd: Mapping[str, torch.Tensor]) -> bool:
    return "patch_embed.proj.weight" in sd and "features.0.0.attn.qkv.weight" in sd


def _is_hf(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in sd)


@register_converter("swin", "official", _is_official)
def from_official_layout(sd: StateDict, model) -> StateDict:
    return _drop_buffers(sd)


@register_converter("swin", "timm", _is_timm)
def from_timm(sd: StateDict, model) -> StateDict:
    """timm 0.9+: patch merging at the start of stage i+1, classifier ``head.fc``."""
    out: StateDict = {}
    for k, v in _drop_buffers(sd).items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.+)", k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        elif k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        out[k] = v
    return out


_TV_BLOCK = (("mlp.0.", "mlp.fc1."), ("mlp.3.", "mlp.fc2."))


def _tv_block(rest: str) -> str:
    return rename_prefix(rest, list(_TV_BLOCK))


def _from_torchvision(sd: StateDict, first_stage: int) -> StateDict:
    """``features.{first+2i}.j`` are the blocks of stage i, ``features.{first+2i+1}`` its patch merging."""
    out: StateDict = {}
    top = {
        "features.0.0.weight": "patch_embed.proj.weight",
        "features.0.0.bias": "patch_embed.proj.bias",
        "features.0.2.weight": "patch_embed.norm.weight",
        "features.0.2.bias": "patch_embed.norm.bias",
    }
    for k, v in _drop_buffers(sd).items():
        if first_stage == 1 and k in top:
            out[top[k]] = v
            continue
        m = re.match(r"features\.(\d+)\.(.+)", k)
        if m is None:
            out[k] = v  # patch_embed (3-D), norm, head: same names
            continue
        idx, rest = int(m.group(1)) - first_stage, m.group(2)
        stage = idx // 2
        b = re.match(r"(\d+)\.(.+)", rest)
        if idx % 2 == 0 and b:
            out[f"layers.{stage}.blocks.{b.group(1)}.{_tv_block(b.group(2))}"] = v
        else:
            out[f"layers.{stage}.downsample.{rest}"] = v
    return out


@register_converter("swin", "torchvision", _is_torchvision_2d)
def from_torchvision(sd: StateDict, model) -> StateDict:
    return _from_torchvision(sd, first_stage=1)


@register_converter("swin", "torchvision-3d", _is_torchvision_3d)
def from_torchvision_3d(sd: StateDict, model) -> StateDict:
    return _from_torchvision(sd, first_stage=0)


_HF_BLOCK = [
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("attention.relative_position_bias.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attention.o_proj.", "attn.proj."),
    ("attention.output.dense.", "attn.proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
]


@register_converter("swin", "huggingface", _is_hf)
def from_huggingface(sd: StateDict, model) -> StateDict:
    sd = {re.sub(r"^swin\.", "", k): v for k, v in _drop_buffers(sd).items()}
    top = {
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "embeddings.norm.weight": "patch_embed.norm.weight",
        "embeddings.norm.bias": "patch_embed.norm.bias",
        "embeddings.position_embeddings": "absolute_pos_embed",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
        "classifier.weight": "head.weight",
        "classifier.bias": "head.bias",
    }
    out: StateDict = {}
    qkv: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        m = re.match(r"encoder\.layers\.(\d+)\.(.+)", k)
        if m is None:
            out[k] = v
            continue
        i, rest = m.group(1), m.group(2)
        if rest.startswith("downsample."):
            out[f"layers.{i}.{rest}"] = v
            continue
        b = re.match(r"blocks\.(\d+)\.(.+)", rest)
        if b is None:
            out[k] = v
            continue
        prefix, rest = f"layers.{i}.blocks.{b.group(1)}", b.group(2)
        q = re.match(r"attention\.(?:self\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$", rest)
        if q:
            qkv.setdefault(prefix, {}).setdefault(q.group(2), {})[HF_QKV_NAMES[q.group(1)]] = v
            continue
        out[f"{prefix}.{rename_prefix(rest, _HF_BLOCK)}"] = v
    return fuse_qkv(qkv, out)


def _table_window(rows: int, model_window: tuple[int, ...]) -> tuple[int, ...]:
    """The window a bias table of ``rows`` rows was made for (square in 2-D; 3-D: spatial as the model's)."""
    if len(model_window) == 2:
        side = math.isqrt(rows)
        if side * side != rows or side % 2 == 0:
            raise ValueError(f"a 2-D relative position bias table cannot have {rows} rows")
        return ((side + 1) // 2,) * 2
    spatial = math.prod(2 * w - 1 for w in model_window[1:])
    if rows % spatial or (rows // spatial) % 2 == 0:
        raise ValueError(f"cannot infer the window of a 3-D bias table with {rows} rows")
    return ((rows // spatial + 1) // 2, *model_window[1:])


@register_adapter("swin")
def adapt(sd: StateDict, model, resampled: list[str]) -> StateDict:
    """Resample bias tables made for another window, and the absolute position embedding to the model's grid."""
    own = model.state_dict()
    for name, module in model.named_modules():
        key = f"{name}.relative_position_bias_table"
        t = sd.get(key)
        if t is None or key not in own or t.shape == own[key].shape or t.shape[1] != own[key].shape[1]:
            continue
        window = module.table_window
        sd[key] = resample_rel_pos_table(t, _table_window(t.shape[0], window), window)
        resampled.append(key)
    pe = sd.get("absolute_pos_embed")
    if pe is not None and "absolute_pos_embed" in own and pe.shape != own["absolute_pos_embed"].shape:
        if model.is_video:
            raise ValueError("resampling a video absolute position embedding at load time needs its old grid")
        sd["absolute_pos_embed"] = resample_pos_embed(pe, model.grid[-2:], None, 0)
        resampled.append("absolute_pos_embed")
    return sd


_OFFICIAL_ARGS = (
    "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depths", "num_heads", "window_size",
    "mlp_ratio", "qkv_bias", "qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "ape", "patch_norm",
)


def config_from_official(config: Mapping[str, Any]):
    """A :class:`SwinConfig` from the official ``SwinTransformer(...)`` keyword arguments.

    Unknown arguments raise; ``norm_layer``/``use_checkpoint``/``fused_window_process`` (no effect on the
    weights or the outputs) are accepted and ignored. Omitted arguments take the official defaults.
    """
    ignored = {"norm_layer", "use_checkpoint", "fused_window_process", "class", "file"}
    bad = sorted(set(config) - set(_OFFICIAL_ARGS) - ignored)
    if bad:
        raise TypeError(f"unknown official SwinTransformer argument(s) {bad}; known: {list(_OFFICIAL_ARGS)}")
    kwargs = {k: v for k, v in config.items() if k in _OFFICIAL_ARGS}
    for k in ("depths", "num_heads"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    for k in ("img_size", "patch_size", "window_size"):
        if isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    return SwinConfig(**kwargs)


_YAML_KEYS = {  # official config.py / configs/swin/*.yaml -> SwinTransformer arguments
    ("DATA", "IMG_SIZE"): "img_size",
    ("MODEL", "NUM_CLASSES"): "num_classes",
    ("MODEL", "DROP_RATE"): "drop_rate",
    ("MODEL", "DROP_PATH_RATE"): "drop_path_rate",
    ("MODEL", "SWIN", "PATCH_SIZE"): "patch_size",
    ("MODEL", "SWIN", "IN_CHANS"): "in_chans",
    ("MODEL", "SWIN", "EMBED_DIM"): "embed_dim",
    ("MODEL", "SWIN", "DEPTHS"): "depths",
    ("MODEL", "SWIN", "NUM_HEADS"): "num_heads",
    ("MODEL", "SWIN", "WINDOW_SIZE"): "window_size",
    ("MODEL", "SWIN", "MLP_RATIO"): "mlp_ratio",
    ("MODEL", "SWIN", "QKV_BIAS"): "qkv_bias",
    ("MODEL", "SWIN", "QK_SCALE"): "qk_scale",
    ("MODEL", "SWIN", "APE"): "ape",
    ("MODEL", "SWIN", "PATCH_NORM"): "patch_norm",
}


def config_from_yaml(path: str) -> dict[str, Any]:
    """SwinTransformer arguments from an official ``configs/swin/*.yaml`` (keys it does not set keep the
    official ``config.py`` defaults, which equal the constructor's)."""
    import yaml

    with open(path) as f:
        tree = yaml.safe_load(f) or {}
    if tree.get("MODEL", {}).get("TYPE", "swin") != "swin":
        raise ValueError(f"{path}: MODEL.TYPE is {tree['MODEL']['TYPE']!r}, not 'swin'")
    out: dict[str, Any] = {}
    for keys, arg in _YAML_KEYS.items():
        node: Any = tree
        for k in keys:
            node = node.get(k) if isinstance(node, Mapping) else None
        if node is not None:
            out[arg] = node
    return out


@register_official("swin")
def build_official(state_dict: StateDict, config: Mapping[str, Any] | str):
    """The vitkit Swin that official ``SwinTransformer(**config)`` builds, with ``state_dict`` loaded strictly.

    ``config``: the constructor's keyword arguments (a dict, or a dict holding them under ``"constructor"``), or
    the path of an official ``configs/swin/*.yaml``.
    """
    if isinstance(config, str):
        config = config_from_yaml(config)
    if isinstance(config, Mapping) and isinstance(config.get("constructor"), Mapping):
        config = config["constructor"]
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be the official SwinTransformer keyword arguments (a dict), got {type(config).__name__}")
    model = SwinTransformer(config_from_official(config))
    load_checkpoint(model, state_dict, strict=True)
    return model.eval()
