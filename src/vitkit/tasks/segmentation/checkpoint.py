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

from vitkit.checkpoints import CheckpointError, LoadReport, load_checkpoint, read_state_dict

PARTS = ("backbone.", "neck.", "decode_head.", "auxiliary_head.")


def is_segmentor_state(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for a whole-segmentor state dict (decode head keys present)."""
    return any(k.startswith("decode_head.") for k in sd)


def load_segmentor_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor],
                           strict: bool = True) -> LoadReport:
    sd = read_state_dict(source)
    backbone_sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    inner = load_checkpoint(model.backbone, backbone_sd, strict=False)
    report = LoadReport(source=f"segmentor (backbone: {inner.source})")
    report.missing = [f"backbone.{k}" for k in inner.missing]
    report.unexpected = [f"backbone.{k}" for k in inner.unexpected]
    report.mismatched = [(f"backbone.{k}", a, b) for k, a, b in inner.mismatched]
    report.resampled = [f"backbone.{k}" for k in inner.resampled]
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    report.missing += sorted(k for k in own if k not in rest)
    report.unexpected += sorted(k for k in rest if k not in own)
    report.mismatched += [(k, tuple(rest[k].shape), tuple(own[k].shape)) for k in sorted(own)
                          if k in rest and rest[k].shape != own[k].shape]
    if strict and not report.ok:
        raise CheckpointError("checkpoint does not match the segmentor:\n" + report.describe())
    bad = {k for k, _, _ in report.mismatched}
    model.load_state_dict({k: v for k, v in rest.items() if k in own and k not in bad}, strict=False)
    return report
