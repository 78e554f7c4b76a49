"""Evaluation: top-1/top-5, multi-view averaging, per-class accuracy, confusion matrix, frame shuffling.

A test item is ``(x, label)`` (one view) or ``(views, label, index)`` with views (V, C, [T,] H, W): the papers'
protocol of K temporal clips x 3 spatial crops. Softmax scores of a sample's views are averaged, then ranked;
multi-label data (multi-hot labels, Charades) takes the maximum of the views' sigmoid scores and reports mAP.
Under DDP each rank scores a disjoint, unpadded shard and the scores are gathered by sample index, so the
numbers do not depend on the number of processes (no DistributedSampler padding duplicates).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import distributed as D
from .amp import autocast
from .metrics import mean_average_precision
from .multilabel import is_multi_label, view_scores
from .progress import progress_bar
from .signals import ignore_in_worker


class Indexed(Dataset):
    """Wraps a dataset so every item carries its index: ``(item, index)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i], i


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: disjoint shards, no padding."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


@dataclass
class EvalResult:
    top1: float
    top5: float
    loss: float
    num_samples: int
    num_views: int
    per_class: list[float] = field(default_factory=list)  # accuracy (%) per class, nan where a class is absent
    confusion: torch.Tensor | None = None  # (K, K) counts, rows = true class, columns = predicted
    scores: torch.Tensor | None = None  # (N, K) averaged softmax scores, in dataset order
    labels: torch.Tensor | None = None
    mAP: float | None = None  # multi-label: mean average precision (%) over classes with a positive
    per_class_ap: list[float] = field(default_factory=list)
    num_classes: int = 0  # K, the width of the scores

    @property
    def has_top5(self) -> bool:
        """Top-5 says something only with more than five classes (it is 100 % otherwise)."""
        return self.num_classes > 5

    def summary(self) -> dict:
        """The headline figures; ``top5`` only with more than five classes."""
        out = {"top1": self.top1, "top5": self.top5, "loss": self.loss, "num_samples": self.num_samples,
               "num_views": self.num_views}
        if not self.has_top5:
            del out["top5"]
        if self.mAP is not None:
            out["mAP"] = self.mAP
        return out


def shuffle_frames(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly permute the frames (dim -3 of (..., C, T, H, W)) of every clip independently."""
    if x.ndim < 5:
        raise ValueError(f"--shuffle-frames needs video clips (..., C, T, H, W), got shape {tuple(x.shape)}")
    lead = x.shape[:-4]
    flat = x.reshape(-1, *x.shape[-4:])
    t = flat.shape[2]
    perms = torch.stack([torch.randperm(t, generator=generator) for _ in range(flat.shape[0])])
    idx = perms.view(-1, 1, t, 1, 1).expand(-1, flat.shape[1], t, flat.shape[3], flat.shape[4])
    return torch.gather(flat, 2, idx.to(flat.device)).reshape(*lead, *x.shape[-4:])


def _split_batch(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    item, index = batch
    if len(item) == 3:  # multi-view: (views, label, dataset index)
        views, label, _ = item
        return views, label, index, True
    x, label = item[0], item[1]
    return x, label, index, False


@torch.no_grad()
def score_dataset(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, workers: int = 0,
                  device: torch.device = torch.device("cpu"), amp: str = "none", shuffle: bool = False,
                  seed: int = 0, progress: bool = False, dist: D.DistInfo | None = None,
                  multi_label: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Video scores (N, K) and labels (N,) or (N, K) for every sample, gathered over ranks; and views per sample.

    Scores: softmax averaged over a sample's views, or with ``multi_label`` (default: the dataset's
    ``multi_label``) sigmoid max-pooled over them."""
    if multi_label is None:
        multi_label = is_multi_label(dataset)
    dist = dist or D.DistInfo(device=device)
    sampler = ShardSampler(len(dataset), dist.rank, dist.world_size)
    loader = DataLoader(Indexed(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=ignore_in_worker)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    idx_all, score_all, label_all, num_views = [], [], [], 1
    it = loader
    if progress:
        it = progress_bar(loader, desc="eval", unit="batch")
    for batch in it:
        x, label, index, multi = _split_batch(batch)
        if shuffle:
            x = shuffle_frames(x, gen)
        b = x.shape[0]
        if multi:
            num_views = x.shape[1]
            x = x.flatten(0, 1)
        with autocast(amp, device):
            logits = model(x.to(device, non_blocking=True))
        probs = view_scores(logits, b, num_views if multi else 1, multi_label)
        idx_all.append(index)
        score_all.append(probs.cpu())
        label_all.append(torch.as_tensor(label))
    model.train(was_training)
    k = score_all[0].shape[1] if score_all else 0
    local = (torch.cat(idx_all) if idx_all else torch.zeros(0, dtype=torch.long),
             torch.cat(score_all) if score_all else torch.zeros(0, k),
             torch.cat(label_all) if label_all else torch.zeros(0, dtype=torch.long))
    parts = D.all_gather_objects(local)
    idx = torch.cat([p[0] for p in parts])
    order = torch.argsort(idx)
    scores = torch.cat([p[1] for p in parts if p[1].numel()])[order]
    labels = torch.cat([p[2] for p in parts])[order]
    views = max(D.all_gather_objects(num_views))
    return scores, labels, views


def metrics_from_scores(scores: torch.Tensor, labels: torch.Tensor, num_views: int = 1) -> EvalResult:
    """Top-1/top-5 (%), NLL of the averaged scores, per-class accuracy and the confusion matrix."""
    n, k = scores.shape
    labels = labels.long()
    top = scores.topk(min(5, k), dim=1).indices
    correct = top == labels[:, None]
    pred = top[:, 0]
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    counts = confusion.sum(1)
    per_class = [(100.0 * confusion[c, c].item() / counts[c].item()) if counts[c] else float("nan") for c in range(k)]
    loss = -scores.gather(1, labels[:, None]).clamp_min(1e-12).log().mean().item() if n else float("nan")
    return EvalResult(
        top1=100.0 * correct[:, 0].float().mean().item() if n else float("nan"),
        top5=100.0 * correct.any(1).float().mean().item() if n else float("nan"),
        loss=loss, num_samples=n, num_views=num_views, per_class=per_class, confusion=confusion,
        scores=scores, labels=labels, num_classes=k,
    )


def multilabel_metrics(scores: torch.Tensor, labels: torch.Tensor, num_views: int = 1) -> EvalResult:
    """mAP (%) of (N, K) sigmoid scores against (N, K) multi-hot labels; top-1/top-5 = the top class(es) hit
    the label set; loss = mean binary cross-entropy of the scores."""
    n, k = scores.shape
    labels = labels.float()
    mAP, ap = mean_average_precision(scores, labels)
    top = scores.topk(min(5, k), dim=1).indices
    hits = labels.gather(1, top) > 0
    p = scores.double().clamp(1e-12, 1 - 1e-12)
    loss = float(-(labels * p.log() + (1 - labels) * (1 - p).log()).mean()) if n else float("nan")
    return EvalResult(
        top1=100.0 * hits[:, 0].float().mean().item() if n else float("nan"),
        top5=100.0 * hits.any(1).float().mean().item() if n else float("nan"),
        loss=loss, num_samples=n, num_views=num_views, scores=scores, labels=labels, mAP=mAP,
        per_class_ap=[100.0 * float(a) for a in ap], num_classes=k,
    )


def evaluate(model: nn.Module, dataset: Dataset, **kwargs) -> EvalResult:
    """Score ``dataset`` (see :func:`score_dataset` for the keywords) and compute the metrics."""
    scores, labels, views = score_dataset(model, dataset, **kwargs)
    if labels.ndim == 2:
        return multilabel_metrics(scores, labels, views)
    return metrics_from_scores(scores, labels, views)


def plot_confusion(confusion: torch.Tensor, path: str | os.PathLike, class_names: Sequence[str] | None = None,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (class names on the axes up to 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = confusion.shape[0]
    norm = confusion.float() / confusion.sum(1, keepdim=True).clamp_min(1)
    size = min(4 + 0.25 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if class_names is not None and k <= 40:
        ax.set_xticks(range(k), [str(c) for c in class_names], rotation=90)
        ax.set_yticks(range(k), [str(c) for c in class_names])
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if confusion[i, j]:
                        ax.text(j, i, int(confusion[i, j]), ha="center", va="center",
                                color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
