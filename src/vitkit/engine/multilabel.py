"""Multi-label classification (Charades): sigmoid outputs, binary cross-entropy, max-pooled views, mAP.

A dataset with ``multi_label = True`` yields float multi-hot labels ``(K,)``. Training uses
``binary_cross_entropy_with_logits`` averaged over classes and samples (PySlowFast's ``bce_logit`` for Charades);
testing applies a sigmoid to every view and takes the maximum over a video's views (PySlowFast's
``ENSEMBLE_METHOD: max``); the metric is the mean over classes of the average precision
(:func:`vitkit.engine.metrics.mean_average_precision`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["is_multi_label", "multilabel_loss", "top1_hits", "view_scores"]


def is_multi_label(dataset) -> bool:
    """True for a dataset (or a wrapper of one) whose labels are multi-hot sets."""
    return bool(getattr(dataset, "multi_label", False))


def multilabel_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over samples and classes."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def top1_hits(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Samples whose top class is right: equal to the label, or (multi-hot labels) in the label set."""
    pred = logits.argmax(-1)
    if y.ndim == 2:
        return int(y.gather(1, pred[:, None]).gt(0).sum())
    return int((pred == y).sum())


def view_scores(logits: torch.Tensor, batch: int, views: int, multi_label: bool) -> torch.Tensor:
    """(B*V, K) logits -> (B, K) video scores: softmax averaged, or sigmoid max-pooled when multi-label."""
    if multi_label:
        return logits.float().sigmoid().view(batch, views, -1).amax(1)
    return logits.float().softmax(-1).view(batch, views, -1).mean(1)
