"""Loading everything strictly except a classifier of another class count (fine-tuning on new classes).

The classifier (``head``, UniFormer's ``aux_head``) of another shape is left out and the model's is re-initialised
with zeros (``reset_classifier``, the ViT paper's fine-tuning head), as timm / torchvision users expect from
``num_classes=N`` with pretrained weights; anything else that does not fit raises :class:`CheckpointError`.
"""
from __future__ import annotations

import torch.nn as nn

from .base import CheckpointError, LoadReport, StateDict, load_checkpoint

CLASSIFIERS = ("head.", "aux_head.")


def load_except_classifier(model: nn.Module, sd: StateDict, source: str, what: str) -> LoadReport:
    """Load ``sd`` (vitkit keys) into ``model``; ``source`` names it in the report, ``what`` in errors."""
    own = model.state_dict()
    sd = {k: v for k, v in sd.items()
          if not (k.startswith(CLASSIFIERS) and (k not in own or own[k].shape != v.shape))}
    report = load_checkpoint(model, sd, strict=False)
    report.source = source
    heads = [k for k in report.missing if k.startswith(CLASSIFIERS)]
    problems = LoadReport(source, [k for k in report.missing if k not in heads], report.unexpected,
                          report.mismatched)
    if not problems.ok:
        raise CheckpointError(f"{what}:\n" + problems.describe())
    if heads and hasattr(model, "reset_classifier"):
        model.reset_classifier(model.num_classes)
    return report

