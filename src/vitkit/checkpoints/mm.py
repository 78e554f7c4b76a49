"""OpenMMLab layouts (mmaction2 / mmdet / mmseg / mmcls): a ``backbone.`` prefix over the backbone's own keys.

The official Video Swin checkpoints (SwinTransformer/Video-Swin-Transformer, built on mmaction2) and the
UniFormer video / detection / segmentation releases store ``{"state_dict": {"backbone.<official key>", ...,
"cls_head.fc_cls.weight", ...}}``. The prefix is removed, the recognition head ``cls_head.fc_cls`` becomes
``head``, and the keys are handed to the family's own converters (official Swin / UniFormer names, torchvision,
...). Dense-task parts (``neck.``, ``decode_head.``, ``auxiliary_head.``, ``rpn_head.``, ``roi_head.`` ...) do
not belong to a classifier and are dropped; anything else is left for the key check to report.

mmpretrain (mmcls), mmdet and mmseg build Swin from mmcv bricks, with their own names (mmpretrain
``models/backbones/swin_transformer.py``; the mapping is mmseg's ``tools/model_converters/swin2mmseg.py`` run
backwards): ``stages.N`` = ``layers.N``, ``attn.w_msa.*`` = ``attn.*``, ``ffn.layers.0.0`` / ``ffn.layers.1`` =
``mlp.fc1`` / ``mlp.fc2``, ``patch_embed.projection`` = ``patch_embed.proj``, the output norm of the last stage
``norm3`` = ``norm`` (the other stages' output norms of dense backbones are dropped), ``head.fc`` = ``head``; and
mmcv's ``PatchMerging`` gathers each 2x2 neighbourhood with ``nn.Unfold``, so the merging ``reduction`` weight
and ``norm`` are stored with their 4C inputs in another order, put back here.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from .base import StateDict, convert_state_dict, register_converter

_HEADS = {"cls_head.fc_cls.": "head.", "cls_head.fc.": "head.", "head.fc.": "head."}
_DENSE = ("neck.", "decode_head.", "auxiliary_head.", "rpn_head.", "roi_head.", "bbox_head.", "mask_head.",
          "keypoint_head.", "data_preprocessor.")


def _is_mm(sd: Mapping[str, torch.Tensor]) -> bool:
    keys = list(sd)
    return bool(keys) and sum(k.startswith("backbone.") for k in keys) > len(keys) // 2


def strip_mm(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """``backbone.X`` -> ``X``, ``cls_head.fc_cls.*`` -> ``head.*``; dense-task heads dropped."""
    out: StateDict = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            out[k[len("backbone."):]] = v
            continue
        if k.startswith(_DENSE):
            continue
        for src, dst in _HEADS.items():
            if k.startswith(src):
                k = dst + k[len(src):]
                break
        out[k] = v
    return out


def _is_mm_swin(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(".attn.w_msa." in k for k in sd) or "patch_embed.projection.weight" in sd and any(
        k.startswith("stages.0.blocks.") for k in sd)


_UNFOLD_ORDER = [0, 2, 1, 3]  # mmcv's unfold groups (kh, kw) -> the official x0, x1, x2, x3; its own inverse


def _unfold_to_cat(v: torch.Tensor) -> torch.Tensor:
    """A patch-merging ``reduction`` weight (out, 4C) or ``norm`` parameter (4C,) from mmcv's unfold channel
    order (c * 4 + group) to the official concatenation order (group * C + c)."""
    lead = v.shape[:-1]
    c = v.shape[-1] // 4
    return v.reshape(*lead, c, 4).transpose(-1, -2)[..., _UNFOLD_ORDER, :].reshape(*lead, 4 * c)


def mm_swin_to_official(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """mmpretrain / mmdet / mmseg Swin keys (``backbone.`` already removed) -> official Swin keys."""
    stages = {int(m.group(1)) for k in sd if (m := re.match(r"stages\.(\d+)\.", k))}
    last = max(stages, default=0)
    out: StateDict = {}
    for k, v in sd.items():
        m = re.fullmatch(r"norm(\d+)\.(weight|bias)", k)
        if m:
            if int(m.group(1)) == last:
                out[f"norm.{m.group(2)}"] = v
            continue  # per-stage output norms of a dense backbone: no part of a classifier
        if k.startswith("patch_embed.projection."):
            k = "patch_embed.proj." + k[len("patch_embed.projection."):]
        elif k.startswith("stages."):
            k = "layers." + k[len("stages."):]
            k = k.replace(".attn.w_msa.", ".attn.").replace(".ffn.layers.0.0.", ".mlp.fc1.")
            k = k.replace(".ffn.layers.1.", ".mlp.fc2.")
            if re.search(r"\.downsample\.(reduction\.weight|norm\.(weight|bias))$", k):
                v = _unfold_to_cat(v)
        out[k] = v
    return out


def _convert(sd: StateDict, model) -> StateDict:
    inner = strip_mm(sd)
    if getattr(model, "family", "") == "swin" and _is_mm_swin(inner):
        inner = mm_swin_to_official(inner)
    inner, _ = convert_state_dict(inner, model)
    return inner


for _family in ("vit", "swin", "mvit", "uniformer"):
    register_converter(_family, "openmmlab", _is_mm)(_convert)
