"""Loading everything strictly except a classifier of another class count (fine-tuning on new classes).

The classifier (``head``, UniFormer's ``aux_head``) of another shape is left out and the model's is re-initialised
with zeros (``reset_classifier``, the ViT paper's fine-tuning head), as timm / torchvision users expect from
``num_classes=N`` with pretrained weights; anything else that does not fit raises :class:`CheckpointError`.
"""
from __future__ import annotations

import torch.nn as nn

from .base import CheckpointError, LoadReport, StateDict, load_weights

def load_except_classifier(model: nn.Module, sd: StateDict, source: str, what: str) -> LoadReport:
    """Load ``sd`` (vitkit keys) into ``model`` by :func:`~vitkit.checkpoints.base.load_weights` with
    ``head="match"`` (the classifier found by the model's ``classifier_names``); ``source`` names it in the report,
    ``what`` in errors."""
    try:
        report = load_weights(model, sd, head="match")
    except CheckpointError as e:
        raise CheckpointError(f"{what}:\n{e}") from None
    report.source = source
    return report
