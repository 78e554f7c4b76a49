"""Run-directory records: metrics as JSON lines, PNG plots of loss, learning rate and accuracy."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, each with a ``kind`` (train, eval, epoch)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True, sinks: list | None = None) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.sinks = list(sinks or [])  # more outputs (TensorBoard, W&B: vitkit.engine.loggers)

    def write(self, kind: str, **values: Any) -> None:
        if not self.enabled:
            return
        row = {"kind": kind, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for sink in self.sinks:
            sink.write(kind, int(values.get("step", 0)), row)

    def close(self) -> None:
        """Flush and close the extra sinks (metrics.jsonl needs nothing)."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()

    def read(self) -> list[dict]:
        return read_metrics(self.path)


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_after(path: str | os.PathLike, step: int) -> None:
    """Drop rows logged after optimiser step ``step`` (a resumed run rewrites them)."""
    rows = read_metrics(path)
    kept = [r for r in rows if r.get("step", 0) <= step]
    if len(kept) != len(rows):
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_metrics(run_dir: str | os.PathLike) -> list[Path]:
    """Write loss.png, lr.png and accuracy.png into ``run_dir`` from its metrics.jsonl; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    out = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=100)
        plt.close(fig)
        out.append(run_dir / name)

    if train:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in train], [float(r["loss"]) for r in train], label="train loss")
        ev = [r for r in evals if "loss" in r]
        if ev:
            ax.plot([r["step"] for r in ev], [r["loss"] for r in ev], "o-", label="test loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "loss.png")
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in train], [r["lr"] for r in train])
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        save(fig, "lr.png")
    if evals:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in (("top1", "test top-1"), ("top5", "test top-5"), ("ema_top1", "EMA test top-1"),
                           ("mIoU", "test mIoU"), ("mAcc", "test mAcc"), ("ema_mIoU", "EMA test mIoU")):
            pts = [(r["epoch"], r[key]) for r in evals if key in r]
            if pts:
                ax.plot(*zip(*pts), "o-", label=label)
        for key, label in (("train_top1", "train top-1"), ("train_pixel_acc", "train pixel accuracy")):
            pts = [(r["epoch"], r[key]) for r in train if key in r]
            if pts:  # on the (augmented, mixed) training batches
                ax.plot(*zip(*pts), "-", alpha=0.5, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        if ax.get_legend_handles_labels()[0]:  # tasks other than classification log no top-1
            ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "accuracy.png")
    return out


def average_precision(scores: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Per-class average precision of (N, K) scores against (N, K) 0/1 labels; nan for a class with no positive.

    AP = sum over thresholds of (recall step) x precision, thresholds at the distinct scores (ties form one
    step), as ``sklearn.metrics.average_precision_score`` computes it.
    """
    import torch

    scores, labels = scores.double(), labels.double()
    n, k = scores.shape
    out = torch.full((k,), float("nan"), dtype=torch.float64)
    for c in range(k):
        y = labels[:, c]
        pos = y.sum()
        if pos == 0:
            continue
        order = torch.argsort(scores[:, c], descending=True, stable=True)
        s, t = scores[order, c], y[order]
        tp = torch.cumsum(t, 0)
        last = torch.ones(n, dtype=torch.bool)  # the last element of each run of tied scores
        last[:-1] = s[1:] != s[:-1]
        tp, seen = tp[last], torch.arange(1, n + 1, dtype=torch.float64)[last]
        precision, recall = tp / seen, tp / pos
        steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
        out[c] = (steps * precision).sum()
    return out


def mean_average_precision(scores: "torch.Tensor", labels: "torch.Tensor") -> tuple[float, "torch.Tensor"]:
    """mAP (%) over the classes that have a positive (PySlowFast's Charades metric), and the per-class APs."""
    ap = average_precision(scores, labels)
    valid = ~ap.isnan()
    return (100.0 * float(ap[valid].mean()) if valid.any() else float("nan")), ap
