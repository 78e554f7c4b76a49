"""Segmentation metrics from one confusion matrix: mIoU, mAcc, aAcc and per-class IoU / accuracy (mmseg's).

The (K, K) matrix (rows = true class, columns = predicted) counts every labelled pixel (``ignore_index`` excluded).
Under DDP each rank counts its shard and the matrices are summed (``all_reduce``), so the figures are exactly
those of one process. IoU_c = TP / (TP + FP + FN), Acc_c = TP / (TP + FN); classes absent from the labels
are left out of the means as mmseg does (``nanmean``): IoU is NaN where TP + FP + FN = 0 (a class absent from
labels but predicted has IoU 0), Acc where TP + FN = 0; aAcc = sum TP / labelled pixels.
"""
from __future__ import annotations

import math

import torch


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255
                     ) -> torch.Tensor:
    """(K, K) int64 counts of (label, pred) pairs over pixels whose label is not ``ignore_index``."""
    keep = label != ignore_index
    label, pred = label[keep].long(), pred[keep].long()
    if label.numel() and (label.min() < 0 or label.max() >= num_classes):
        bad = label[(label < 0) | (label >= num_classes)].unique()[:5].tolist()
        raise ValueError(f"labels {bad} outside 0..{num_classes - 1} (and not the ignore index {ignore_index})")
    return torch.bincount(label * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def _nanmean(values: list[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return sum(good) / len(good) if good else float("nan")


def segmentation_metrics(confusion: torch.Tensor) -> dict:
    """mIoU, mAcc, aAcc (percent) and the per-class IoU / Acc lists from a confusion matrix."""
    cm = confusion.double()
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    union = gt + pred - tp
    iou = [float(100 * tp[c] / union[c]) if union[c] > 0 else float("nan") for c in range(cm.shape[0])]
    acc = [float(100 * tp[c] / gt[c]) if gt[c] > 0 else float("nan") for c in range(cm.shape[0])]
    total = float(gt.sum())
    return {"mIoU": _nanmean(iou), "mAcc": _nanmean(acc),
            "aAcc": 100 * float(tp.sum()) / total if total else float("nan"),
            "per_class_iou": iou, "per_class_acc": acc, "pixels": int(total)}
