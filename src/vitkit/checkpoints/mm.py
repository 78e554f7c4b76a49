"""OpenMMLab layouts (mmaction2 / mmdet / mmseg / mmcls): a ``backbone.`` prefix over the backbone's own keys.

The official Video Swin checkpoints (SwinTransformer/Video-Swin-Transformer, built on mmaction2) and the
UniFormer video / detection / segmentation releases store ``{"state_dict": {"backbone.<official key>", ...,
"cls_head.fc_cls.weight", ...}}``. The prefix is removed, the recognition head ``cls_head.fc_cls`` becomes
``head``, and the keys are handed to the family's own converters (official Swin / UniFormer names, torchvision,
...). Dense-task parts (``neck.``, ``decode_head.``, ``auxiliary_head.``, ``rpn_head.``, ``roi_head.`` ...) do
not belong to a classifier and are dropped; anything else is left for the key check to report.
"""
from __future__ import annotations

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


def _convert(sd: StateDict, model) -> StateDict:
    inner, _ = convert_state_dict(strip_mm(sd), model)
    return inner


for _family in ("vit", "swin", "mvit", "uniformer"):
    register_converter(_family, "openmmlab", _is_mm)(_convert)
