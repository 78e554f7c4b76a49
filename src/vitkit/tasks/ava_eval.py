"""Frame-level AVA mAP: per-class average precision at IoU 0.5 over (video, timestamp, box) detections.

The official AVA evaluation (ActivityNet's ``get_ava_performance.py``, PySlowFast's ``ava_eval_helper.py``) runs
the TF Object Detection API's ``PascalDetectionEvaluator`` with every keyframe as an image. Per class and keyframe,
the detections of that class, highest score first, are matched greedily: a detection is a true positive when the
ground-truth box it overlaps most has IoU >= 0.5 and was not matched before, otherwise a false positive
(detections in keyframes without ground truth are false positives). Over all keyframes the detections are sorted
by score, precision made non-increasing from the right (the VOC envelope) and AP is the area under it at each
recall step. mAP is the mean over the classes that have ground truth (classes without any are left out, as the
evaluator's ``nanmean``). Keyframes in ``excluded`` (the official ``*_excluded_timestamps_*.csv``) are ignored.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

Key = tuple  # (video, second)


def _iou(a: list, b: list) -> np.ndarray:
    """(N, 4) x (M, 4) ``x1, y1, x2, y2`` boxes -> (N, M) IoU (normalised coordinates, no +1), in float64."""
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)).numpy()


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOCdevkit AP: the precision envelope (non-increasing) summed over the recall steps."""
    if precision.size == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0] + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def frame_ap(ground_truth: Iterable[tuple[Key, Sequence[float], int]],
             detections: Iterable[tuple[Key, Sequence[float], int, float]],
             classes: Iterable[int] | None = None, iou_threshold: float = 0.5,
             excluded: set | None = None) -> tuple[float, dict[int, float]]:
    """mAP (%) and per-class AP (fractions; nan for a class without ground truth).

    ``ground_truth``: ``(key, box, class)`` rows; ``detections``: ``(key, box, class, score)`` rows; ``classes``
    restricts both to those ids (the label map's); boxes ``x1, y1, x2, y2``.
    """
    excluded = excluded or set()
    allowed = set(classes) if classes is not None else None
    gt: dict[int, dict[Key, list]] = defaultdict(lambda: defaultdict(list))
    dt: dict[int, dict[Key, list]] = defaultdict(lambda: defaultdict(list))
    for key, box, c in ground_truth:
        if key not in excluded and (allowed is None or c in allowed):
            gt[c][key].append(list(box))
    for key, box, c, s in detections:
        if key not in excluded and (allowed is None or c in allowed):
            dt[c][key].append((float(s), list(box)))
    ids = sorted(allowed) if allowed is not None else sorted(set(gt) | set(dt))
    per_class: dict[int, float] = {}
    for c in ids:
        num_gt = sum(len(v) for v in gt[c].values())
        if num_gt == 0:
            per_class[c] = float("nan")
            continue
        scores, hits = [], []
        for key, dets in dt[c].items():
            dets = sorted(dets, key=lambda d: -d[0])  # stable: ties keep their order
            truth = gt[c].get(key)
            matched = np.zeros(len(truth or []), dtype=bool)
            iou = _iou([b for _, b in dets], truth) if truth else None
            for k, (s, _) in enumerate(dets):
                tp = False
                if iou is not None:
                    j = int(np.argmax(iou[k]))
                    if iou[k, j] >= iou_threshold and not matched[j]:
                        matched[j] = tp = True
                scores.append(s)
                hits.append(tp)
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        tp = np.asarray(hits, dtype=float)[order]
        cum = np.cumsum(tp)
        precision = cum / np.arange(1, len(tp) + 1)
        per_class[c] = voc_average_precision(precision, cum / num_gt)
    valid = [v for v in per_class.values() if not np.isnan(v)]
    return (100.0 * float(np.mean(valid)) if valid else float("nan")), per_class
