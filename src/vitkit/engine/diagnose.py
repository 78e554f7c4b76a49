"""Why a loss went non-finite: the likely cause read from the batch, the weights and the run's actual settings.

Checked in order of certainty: the input batch itself holding NaN/inf (data), weights already non-finite
(loaded or resumed from bad weights, or a previous step diverged), fp16 overflow (only when ``train.amp=fp16``),
then the settings that make divergence likely: a high learning rate for the optimiser, no gradient clipping, no
warm-up. Only the settings the run actually has are named.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vitkit.checkpoints.validate import first_nonfinite

#: learning rates above which an optimiser commonly diverges on transformers (AdamW recipes use 5e-4 .. 1e-3
#: at batch 512-1024; SGD fine-tuning 0.01 .. 0.1)
HIGH_LR = {"adamw": 2e-3, "adam": 2e-3, "sgd": 0.5}


def nonfinite_loss_message(recipe, step: int, loss: float, inputs: torch.Tensor, model: nn.Module, lr: float,
                           last_good: str) -> str:
    """One message: the loss, the step, the likely cause(s) from this run, and the last good checkpoint."""
    t, o, s = recipe.train, recipe.optim, recipe.schedule
    causes: list[str] = []
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        causes.append("the input batch holds NaN/inf values (check the data, and data.mean/data.std)")
    bad = first_nonfinite(dict(model.named_parameters()))
    if bad is not None:
        where = (f"loaded from model.weights={recipe.model.weights}" if recipe.model.weights and step == 0
                 else "a previous step diverged")
        causes.append(f"the weights are already non-finite ({bad[0]!r}; {where})")
    if t.amp == "fp16":
        causes.append("fp16 overflow: use train.amp=bf16, or train.amp=none")
    if not causes:
        high = HIGH_LR.get(o.name, 2e-3)
        if lr > high:
            causes.append(f"the learning rate is high for {o.name} ({lr:.2e} at this step, optim.lr={o.lr:g}"
                          + (f" scaled by batch/{o.base_batch_size}" if o.base_batch_size else "") + "); lower optim.lr")
        if not t.clip_grad:
            causes.append("no gradient clipping: set train.clip_grad=1.0")
        if not (s.warmup_epochs or getattr(s, "warmup_iters", 0)):
            causes.append("no warm-up: set schedule.warmup_epochs (e.g. 5)")
        if not causes:
            causes.append(f"divergence at optim.lr={o.lr:g} with train.clip_grad={t.clip_grad}: lower optim.lr")
    return (f"non-finite loss {loss} at step {step}; likely cause: " + "; or ".join(causes)
            + f". Last good checkpoint: {last_good}")
