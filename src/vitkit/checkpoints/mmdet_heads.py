"""The detection parts of an mmdet 2.x Mask R-CNN checkpoint (Swin-Transformer-Object-Detection, UniFormer
object_detection) in torchvision's Mask R-CNN layout, as :func:`vitkit.tasks.detection_model.build_detector`
builds it.

What maps (same structure, renamed; dense-facts §2):

====================================  ==========================================================
mmdet                                 torchvision (vitkit detector)
====================================  ==========================================================
``neck.lateral_convs.i.conv``         ``backbone.fpn.inner_blocks.i.0``
``neck.fpn_convs.i.conv``             ``backbone.fpn.layer_blocks.i.0``
``rpn_head.rpn_conv``                 ``rpn.head.conv.0.0``
``rpn_head.rpn_cls`` / ``rpn_reg``    ``rpn.head.cls_logits`` / ``bbox_pred`` (same anchor order)
``roi_head.bbox_head.shared_fcs.0/1`` ``roi_heads.box_head.fc6`` / ``fc7``
``roi_head.bbox_head.fc_cls``         ``roi_heads.box_predictor.cls_score`` (background row moved
                                      from last, mmdet, to first, torchvision)
``roi_head.bbox_head.fc_reg``         ``roi_heads.box_predictor.bbox_pred`` (class-specific deltas;
                                      a zero background block is prepended; mmdet's target stds
                                      0.1/0.2 equal torchvision's box-coder weights 10/5)
``roi_head.mask_head.convs.i.conv``   ``roi_heads.mask_head.i.0``
``roi_head.mask_head.upsample``       ``roi_heads.mask_predictor.conv5_mask``
``roi_head.mask_head.conv_logits``    ``roi_heads.mask_predictor.mask_fcn_logits`` (zero
                                      background row prepended)
====================================  ==========================================================

Anything else outside ``backbone.`` (Cascade stages, GroupNorm heads with other layouts) does not map and is
reported as unexpected by the loader; ``backbone.`` keys are left to the backbone's own converter.
"""
from __future__ import annotations

import re

import torch

_RENAMES = [
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.layer_blocks.\1.0."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
    (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
    (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1.0."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_predictor.conv5_mask."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_predictor.mask_fcn_logits."),
]
HEAD_PREFIXES = ("neck.", "rpn_head.", "roi_head.")


def is_mmdet_detector(state: dict) -> bool:
    """An mmdet two-stage detector's state dict: a ``backbone.`` and a ``roi_head.`` or ``rpn_head.`` part."""
    return any(k.startswith("backbone.") for k in state) and any(k.startswith(HEAD_PREFIXES[1:]) for k in state)


def _rename(key: str) -> str | None:
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def _background_first(t: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:  # (80*4, ...) -> (81*4, ...), background block of zeros first
        return torch.cat([t.new_zeros((4,) + t.shape[1:]), t])
    return torch.cat([t[-1:], t[:-1]])  # (81, ...): mmdet's background is last


def convert_mmdet_heads(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map the neck / RPN / RoI-head keys of ``state``; returns (mapped tensors, keys that do not map).

    ``backbone.`` keys are not touched (neither returned nor listed)."""
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        if key.startswith("backbone."):
            continue
        new = _rename(key)
        if new is None:
            unmapped.append(key)
            continue
        if new.startswith("roi_heads.box_predictor.cls_score."):
            value = _background_first(value, regression=False)
        elif new.startswith("roi_heads.box_predictor.bbox_pred."):
            value = _background_first(value, regression=True)
        elif new.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
            value = torch.cat([value.new_zeros((1,) + value.shape[1:]), value])
        out[new] = value
    return out, unmapped
