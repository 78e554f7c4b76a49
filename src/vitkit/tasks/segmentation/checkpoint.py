"""Whole-segmentor weights in the official (mmseg) layout: ``backbone.*`` / ``neck.*`` / ``decode_head.*`` /
``auxiliary_head.*``, as Swin-Transformer-Semantic-Segmentation and UniFormer's semantic_segmentation release them.

The ``backbone.`` part goes through the backbone family's converters and adapters (official Swin buffers such as
``relative_position_index`` dropped, bias tables resampled to the model's windows, ...); the heads' keys are
mmseg's own module names (:mod:`.heads`), so they load as they are. The report is the classifiers' one: strict
by default, anything missing, unexpected or mis-shaped raises naming the keys.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch
import torch.nn as nn

from vitkit.checkpoints import LoadReport
from vitkit.checkpoints.dense import load_dense_weights

PARTS = ("backbone.", "neck.", "decode_head.", "auxiliary_head.")


def is_segmentor_state(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for a whole-segmentor state dict (decode head keys present)."""
    return any(k.startswith("decode_head.") for k in sd)


def load_segmentor_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor],
                           strict: bool = True) -> LoadReport:
    """The whole segmentor: ``backbone.*`` through the family's converters, heads by their mmseg names."""
    return load_dense_weights(model, source, backbone=model.backbone, prefix="backbone.", strict=strict,
                              what="segmentor")
