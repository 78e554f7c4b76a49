"""Whole dense-model weights in an OpenMMLab layout: a ``backbone.`` part plus the task's own parts.

``load_dense_weights(model, source, backbone=model.x, prefix="x.", convert_rest=fn)`` sends the ``backbone.``
keys through the backbone family's converters (the classifiers' loading: layouts detected, official buffers
dropped, tables resampled) into ``backbone`` (found in ``model`` under ``prefix``), maps the other keys with
``convert_rest`` (``(mapped, unmapped)``; identity when None), and loads both with one report: strict by default,
anything missing, unexpected (including what ``convert_rest`` could not map) or mis-shaped raises naming the keys.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

import torch
import torch.nn as nn

from .base import CheckpointError, LoadReport, load_checkpoint, read_state_dict

RestConverter = Callable[[dict], tuple[dict, list]]


def load_dense_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor], *,
                       backbone: nn.Module, prefix: str, convert_rest: RestConverter | None = None,
                       strict: bool = True, what: str = "model") -> LoadReport:
    sd = read_state_dict(source)
    backbone_sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    inner = load_checkpoint(backbone, backbone_sd, strict=False)
    report = LoadReport(source=f"{what} (backbone: {inner.source})")
    report.missing = [prefix + k for k in inner.missing]
    report.unexpected = [f"backbone.{k}" for k in inner.unexpected]
    report.mismatched = [(prefix + k, a, b) for k, a, b in inner.mismatched]
    report.resampled = [prefix + k for k in inner.resampled]
    rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    rest, unmapped = convert_rest(rest) if convert_rest is not None else (rest, [])
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    report.missing += sorted(k for k in own if k not in rest)
    report.unexpected += sorted(unmapped) + sorted(k for k in rest if k not in own)
    report.mismatched += [(k, tuple(rest[k].shape), tuple(own[k].shape)) for k in sorted(own)
                          if k in rest and rest[k].shape != own[k].shape]
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not match the {what}:\n" + report.describe())
    bad = {k for k, _, _ in report.mismatched}
    model.load_state_dict({k: v for k, v in rest.items() if k in own and k not in bad}, strict=False)
    return report
