"""Classifier-specific loading: everything strictly except a classifier of another class count (fine-tuning on new
classes), and linear-probe heads folded into plain linear layers.

The classifier (``head``, UniFormer's ``aux_head``) of another shape is left out and the model's is re-initialised
with zeros (``reset_classifier``, the ViT paper's fine-tuning head), as timm / torchvision users expect from
``num_classes=N`` with pretrained weights; anything else that does not fit raises :class:`CheckpointError`.

A run trained with ``model.finetune=linear_probe_bn`` stores its classifier's BatchNorm statistics
(``head.norm.running_mean`` / ``running_var``; :class:`vitkit.engine.finetune.ProbeHead`). Loaded into a model with a
plain linear head (``vitkit evaluate`` / ``predict`` / ``export`` of that run), the norm is folded into the linear
layer, which then computes what the probe computed at test time; a model that has the probe head keeps them.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .base import CheckpointError, LoadReport, StateDict, convert_state_dict, load_weights, register_converter

#: the BatchNorm epsilon of the linear-probe head (MAE ``main_linprobe.py``: ``BatchNorm1d(affine=False, eps=1e-6)``)
PROBE_NORM_EPS = 1e-6
_PROBE_NORM = "head.norm."


def fold_probe_norm(weight: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor, var: torch.Tensor,
                    eps: float = PROBE_NORM_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """``Linear(BatchNorm(x))`` at test time (normalised by ``mean`` / ``var``, no affine) as one linear layer:
    the weight and bias of ``W (x - mean) / sqrt(var + eps) + b``."""
    w = weight * (var + eps).rsqrt()
    b = (bias if bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)) - w @ mean
    return w, b


def _has_probe_norm(sd: Mapping[str, torch.Tensor]) -> bool:
    return f"{_PROBE_NORM}running_var" in sd and "head.weight" in sd


def _convert_probe(sd: StateDict, model: nn.Module) -> StateDict:
    norm = {k: sd.pop(k) for k in [k for k in sd if k.startswith(_PROBE_NORM)]}
    rest, _ = convert_state_dict(sd, model)  # the family's own layout of everything else
    if isinstance(getattr(getattr(model, "head", None), "norm", None), nn.BatchNorm1d):
        return {**rest, **norm}  # the model has the probe head: its statistics load as they are
    rest["head.weight"], rest["head.bias"] = fold_probe_norm(
        rest["head.weight"], rest.get("head.bias"), norm[f"{_PROBE_NORM}running_mean"],
        norm[f"{_PROBE_NORM}running_var"])
    return rest


for _family in ("vit", "swin", "mvit", "uniformer"):
    register_converter(_family, "vitkit (linear-probe head)", _has_probe_norm)(_convert_probe)


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
