"""ViT checkpoint layouts: timm (= vitkit's own names), torchvision ``vit_*`` and Hugging Face ``ViT*`` (4.x and 5.x).

Position embeddings are resampled to the model's grid at load time (bicubic, the prefix tokens kept), which is
how the paper fine-tunes at a higher resolution.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from vitkit.layers import resample_pos_embed

from .base import HF_QKV_NAMES, StateDict, fuse_qkv, register_adapter, register_converter, rename_prefix


def _is_torchvision(sd: Mapping[str, torch.Tensor]) -> bool:
    return "conv_proj.weight" in sd and "encoder.pos_embedding" in sd


def _is_hf(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in sd)


@register_converter("vit", "torchvision", _is_torchvision)
def from_torchvision(sd: StateDict, model) -> StateDict:
    out: StateDict = {}
    top = {
        "class_token": "cls_token",
        "conv_proj.weight": "patch_embed.proj.weight",
        "conv_proj.bias": "patch_embed.proj.bias",
        "encoder.pos_embedding": "pos_embed",
        "encoder.ln.weight": "norm.weight",
        "encoder.ln.bias": "norm.bias",
        "heads.head.weight": "head.weight",
        "heads.head.bias": "head.bias",
        "heads.pre_logits.weight": "pre_logits.fc.weight",
        "heads.pre_logits.bias": "pre_logits.fc.bias",
    }
    layer = {
        "ln_1": "norm1",
        "ln_2": "norm2",
        "self_attention.in_proj_weight": "attn.qkv.weight",
        "self_attention.in_proj_bias": "attn.qkv.bias",
        "self_attention.out_proj": "attn.proj",
        "mlp.0": "mlp.fc1",
        "mlp.3": "mlp.fc2",
        "mlp.linear_1": "mlp.fc1",
        "mlp.linear_2": "mlp.fc2",
    }
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        m = re.match(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)", k)
        if m is None:
            out[k] = v  # left for the key check to report
            continue
        out[f"blocks.{m.group(1)}.{rename_prefix(m.group(2), list(layer.items()))}"] = v
    return out


_HF_LAYER = [
    # transformers 5.x
    ("attention.o_proj", "attn.proj"),
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
    # transformers 4.x
    ("attention.output.dense", "attn.proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]


@register_converter("vit", "huggingface", _is_hf)
def from_huggingface(sd: StateDict, model) -> StateDict:
    sd = {re.sub(r"^vit\.", "", k): v for k, v in sd.items()}
    out: StateDict = {}
    qkv: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    top = {
        "embeddings.cls_token": "cls_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
        "classifier.weight": "head.weight",
        "classifier.bias": "head.bias",
        "pooler.dense.weight": "pre_logits.fc.weight",
        "pooler.dense.bias": "pre_logits.fc.bias",
    }
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        m = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)", k)
        if m is None:
            out[k] = v
            continue
        prefix, rest = f"blocks.{m.group(1)}", m.group(2)
        q = re.match(r"attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)", rest)
        if q:
            qkv.setdefault(prefix, {}).setdefault(q.group(2), {})[HF_QKV_NAMES[q.group(1)]] = v
            continue
        out[f"{prefix}.{rename_prefix(rest, _HF_LAYER)}"] = v
    return fuse_qkv(qkv, out)


@register_adapter("vit")
def adapt(sd: StateDict, model, resampled: list[str]) -> StateDict:
    """Resample the checkpoint's position embeddings to the model's token grid."""
    own = model.state_dict()
    pe = sd.get("pos_embed")
    if pe is not None and "pos_embed" in own and pe.shape != own["pos_embed"].shape:
        prefix = model.num_prefix_tokens
        if model.is_video:
            raise ValueError("resampling a joint video position embedding at load time needs the old (T, H, W) grid")
        sd["pos_embed"] = resample_pos_embed(pe, model.grid, None, prefix)
        resampled.append("pos_embed")
    for name, idx in (("pos_embed_spatial", slice(1, None)), ("pos_embed_temporal", slice(0, 1))):
        t = sd.get(name)
        if t is not None and name in own and t.shape != own[name].shape:
            new_grid = model.grid[idx]
            old_grid = None if name == "pos_embed_spatial" else (t.shape[1],)
            sd[name] = resample_pos_embed(t, new_grid, old_grid, 0)
            resampled.append(name)
    return sd
