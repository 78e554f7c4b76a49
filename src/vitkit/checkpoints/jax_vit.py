"""The JAX/Flax ``.npz`` checkpoints of google-research/vision_transformer (original, AugReg, SAM and the R50
hybrids) -> vitkit's ViT keys (which are timm's).

The npz holds flattened Flax parameter paths: ``embedding/kernel`` (HWIO), ``cls``,
``Transformer/posembed_input/pos_embedding``, ``Transformer/encoderblock_{i}/{LayerNorm_0, LayerNorm_2,
MultiHeadDotProductAttention_1/{query,key,value,out}, MlpBlock_3/Dense_{0,1}}``, ``Transformer/encoder_norm``,
``pre_logits`` (original 21k models) and ``head``; hybrids add the BiT ResNet: ``conv_root``, ``gn_root``,
``block{s}/unit{u}/{conv1..3, gn1..3, conv_proj, gn_proj}``. Kernels are transposed to PyTorch's (out, in, ...)
order and the per-head query/key/value kernels fused into ``attn.qkv``, as timm's ``_load_weights`` does.
Arrays are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from .base import CheckpointError, StateDict, register_converter

def _is_jax(sd: Mapping[str, torch.Tensor]) -> bool:
    return "embedding/kernel" in sd


def _t(w: torch.Tensor) -> torch.Tensor:
    """Flax kernel -> PyTorch weight: HWIO -> OIHW, (in, out) -> (out, in); (1,1,1,C) scales flattened."""
    if w.ndim == 4 and w.shape[0] == w.shape[1] == w.shape[2] == 1:
        w = w.flatten()
    if w.ndim == 4:
        return w.permute(3, 2, 0, 1).contiguous()
    if w.ndim == 2:
        return w.t().contiguous()
    return w


_BLOCK = {
    "LayerNorm_0/scale": "norm1.weight", "LayerNorm_0/bias": "norm1.bias",
    "LayerNorm_2/scale": "norm2.weight", "LayerNorm_2/bias": "norm2.bias",
    "MlpBlock_3/Dense_0/kernel": "mlp.fc1.weight", "MlpBlock_3/Dense_0/bias": "mlp.fc1.bias",
    "MlpBlock_3/Dense_1/kernel": "mlp.fc2.weight", "MlpBlock_3/Dense_1/bias": "mlp.fc2.bias",
}
_TOP = {
    "embedding/bias": "patch_embed.proj.bias", "cls": "cls_token",
    "Transformer/posembed_input/pos_embedding": "pos_embed",
    "Transformer/encoder_norm/scale": "norm.weight", "Transformer/encoder_norm/bias": "norm.bias",
    "pre_logits/kernel": "pre_logits.fc.weight", "pre_logits/bias": "pre_logits.fc.bias",
    "head/kernel": "head.weight", "head/bias": "head.bias",
}
def _resnet_key(k: str) -> str | None:
    """BiT ResNet paths -> ``patch_embed.backbone...`` names (timm's ResNetV2 = vitkit's stem)."""
    root = {"conv_root/kernel": "stem.conv.weight", "gn_root/scale": "stem.norm.weight", "gn_root/bias": "stem.norm.bias"}
    if k in root:
        return "patch_embed.backbone." + root[k]
    m = re.fullmatch(r"block(\d+)/unit(\d+)/(conv|gn)(\d|_proj)/(kernel|scale|bias)", k)
    if m is None:
        return None
    stage, unit, kind, idx, param = int(m.group(1)) - 1, int(m.group(2)) - 1, m.group(3), m.group(4), m.group(5)
    block = f"patch_embed.backbone.stages.{stage}.blocks.{unit}"
    if idx == "_proj":
        mod = "downsample.conv" if kind == "conv" else "downsample.norm"
    else:
        mod = f"conv{idx}" if kind == "conv" else f"norm{idx}"
    return f"{block}.{mod}.{'weight' if param in ('kernel', 'scale') else 'bias'}"


@register_converter("vit", "jax-npz", _is_jax)
def from_jax(sd: StateDict, model) -> StateDict:
    out: StateDict = {}
    hybrid = any(k.startswith("conv_root/") for k in sd)
    qkv: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
    for k, v in sd.items():
        if k == "embedding/kernel":
            out["patch_embed.proj.weight"] = _t(v)
        elif k in _TOP:
            out[_TOP[k]] = v if k in ("cls", "Transformer/posembed_input/pos_embedding") else _t(v)
        elif hybrid and _resnet_key(k):
            out[_resnet_key(k)] = _t(v)
        else:
            m = re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", k)
            if m is None:
                out[k] = v  # left for the key check to report
                continue
            i, rest = int(m.group(1)), m.group(2)
            a = re.fullmatch(r"MultiHeadDotProductAttention_1/(query|key|value|out)/(kernel|bias)", rest)
            if a is None:
                out[f"blocks.{i}.{_BLOCK.get(rest, rest)}"] = _t(v) if rest in _BLOCK else v
            elif a.group(1) == "out":
                # kernel (heads, head_dim, D) -> (D, heads*head_dim)
                out[f"blocks.{i}.attn.proj.{'weight' if a.group(2) == 'kernel' else 'bias'}"] = (
                    v.flatten(0, 1).t().contiguous() if a.group(2) == "kernel" else v)
            else:
                # kernel (D, heads, head_dim) -> (heads*head_dim, D); bias (heads, head_dim) -> flat
                t = v.flatten(1).t() if a.group(2) == "kernel" else v.reshape(-1)
                qkv.setdefault(i, {}).setdefault(a.group(2), {})[a.group(1)] = t
    for i, kinds in qkv.items():
        for kind, parts in kinds.items():
            if set(parts) != {"query", "key", "value"}:
                raise CheckpointError(f"block {i}: incomplete query/key/value {kind} in the npz checkpoint")
            name = "weight" if kind == "kernel" else "bias"
            out[f"blocks.{i}.attn.qkv.{name}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    return out
