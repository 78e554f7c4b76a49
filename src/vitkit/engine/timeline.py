"""Predictions along a long video: sliding clips, per-window top-k, smoothing over time, PNG + JSON + CSV.

``predict_timeline`` streams the video once (:class:`vitkit.data.stream.WindowStream`: memory bounded by one
clip's span whatever the length), classifies the windows in batches, and smooths the class probabilities with a
centred moving average over ``smooth`` windows, itself streamed (it holds ``smooth`` probability vectors). Per
window it keeps only the top-k (raw and smoothed), so what grows with the video is the output itself.
Writes under ``out``: ``timeline.csv`` (one row per window, written as it goes), ``timeline.json`` and
``timeline.png`` (the smoothed probability of the most frequent classes over time, and a band of the smoothed
top-1 class).
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from vitkit.fileio import atomic_write, atomic_write_text

__all__ = ["Timeline", "predict_timeline", "plot_timeline"]


@dataclass
class Timeline:
    video: str
    fps: float
    frames: int
    clip: dict
    smooth: int
    windows: list[dict] = field(default_factory=list)  # index, start_s, end_s, frames [first, last], top, smoothed

    def to_json(self) -> dict:
        return {"video": self.video, "fps": self.fps, "frames": self.frames, "clip": self.clip,
                "smooth": self.smooth, "windows": self.windows}


def _top(p: torch.Tensor, k: int, names: Sequence[str]) -> list[list]:
    v, i = p.topk(k)
    return [[names[c], round(float(x), 5)] for x, c in zip(v.tolist(), i.tolist())]


def predict_timeline(model: nn.Module, path: str, out: str | os.PathLike, *, names: Sequence[str], num_frames: int,
                     sampling_rate: int, transform: Callable, stride: int | None = None, smooth: int = 5,
                     top_k: int = 5, batch_size: int = 8, device: torch.device = torch.device("cpu"),
                     prepare: Callable | None = None, progress: bool = True) -> Timeline:
    """Classify sliding windows of ``path``; write ``timeline.{csv,json,png}`` into ``out``; return the timeline."""
    from vitkit.data.stream import WindowStream

    from .progress import on_terminal

    if smooth < 1:
        raise ValueError(f"--smooth must be >= 1 window, got {smooth}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stream = WindowStream(path, num_frames, sampling_rate, stride, prepare=prepare)
    k = max(1, min(top_k, len(names)))
    tl = Timeline(str(path), stream.fps, 0, {"num_frames": num_frames, "sampling_rate": sampling_rate,
                                             "span": stream.span, "stride": stream.stride}, smooth)
    recent: deque = deque()  # (window dict, probs) of the windows a smoothed value still needs: <= smooth
    half = smooth // 2
    state = {"next": 0, "frames_seen": 0}
    csv_path = out / "timeline.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    model.eval()

    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["window", "start_s", "end_s", "first_frame", "last_frame", "top1", "top1_prob",
                         "smoothed_top1", "smoothed_prob"])

        def emit() -> None:
            """Window ``state['next']`` gets the mean of the probabilities of its neighbours within ``half``."""
            g = state["next"]
            near = [(w, p) for w, p in recent if abs(w["index"] - g) <= half]
            w = next(w for w, _ in near if w["index"] == g)
            w["smoothed"] = _top(torch.stack([p for _, p in near]).mean(0), k, names)
            writer.writerow([w["index"], f"{w['start_s']:.3f}", f"{w['end_s']:.3f}", *w["frames"],
                             w["top"][0][0], w["top"][0][1], w["smoothed"][0][0], w["smoothed"][0][1]])
            tl.windows.append(w)
            state["next"] = g + 1
            while recent and recent[0][0]["index"] < state["next"] - half:
                recent.popleft()

        def push(batch: list) -> None:
            x = torch.stack([transform(wd.clip) for wd in batch]).to(device)
            with torch.no_grad():
                probs = model(x).float().softmax(-1).cpu()
            for wd, p in zip(batch, probs):
                recent.append(({"index": wd.index, "start_s": round(wd.start_s, 3), "end_s": round(wd.end_s, 3),
                                "frames": [wd.frames[0], wd.frames[-1]], "top": _top(p, k, names)}, p))
                while recent and recent[-1][0]["index"] >= state["next"] + half:  # its right neighbours have all arrived
                    emit()

        bar = None
        if progress and on_terminal():  # frames decoded, with rate and ETA
            from tqdm import tqdm

            bar = tqdm(total=stream.estimated_frames or None, unit="frame", desc=os.path.basename(str(path)),
                       dynamic_ncols=True, leave=False)
        batch: list = []
        for wd in stream:
            batch.append(wd)
            if bar is not None:
                bar.update(stream.frames_decoded - bar.n)
            if len(batch) == batch_size:
                push(batch)
                batch = []
        if batch:
            push(batch)
        while recent and state["next"] <= recent[-1][0]["index"]:  # the last windows: one-sided averages
            emit()
        if bar is not None:
            bar.close()
    os.replace(tmp, csv_path)
    tl.frames = stream.frames_decoded
    tl.clip["max_frames_held"] = stream.max_held
    _write_json(out / "timeline.json", tl.to_json())
    plot_timeline(tl, out / "timeline.png")
    return tl


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def plot_timeline(tl: Timeline, path: str | os.PathLike, classes: int = 5) -> Path:
    """Smoothed probability over time of the ``classes`` most frequent smoothed top-1 classes, and a top-1 band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = tl.windows
    mid = [(w["start_s"] + w["end_s"]) / 2 for w in ws]
    common = [c for c, _ in Counter(w["smoothed"][0][0] for w in ws).most_common(classes)]
    fig, (ax, band) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(common)}
    for c in common:
        ax.plot(mid, [dict(map(tuple, w["smoothed"])).get(c, 0.0) for w in ws], label=c, color=colours[c])
    ax.set_ylabel("probability (smoothed)")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"{os.path.basename(tl.video)}: {len(ws)} windows of {tl.clip['num_frames']}x"
                 f"{tl.clip['sampling_rate']}, stride {tl.clip['stride']} frames, smoothing {tl.smooth}")
    for w in ws:
        c = w["smoothed"][0][0]
        band.axvspan(w["start_s"], max(w["end_s"], w["start_s"] + 1e-3), color=colours.get(c, (0.8, 0.8, 0.8)), lw=0)
    band.set_yticks([])
    band.set_xlabel("time (s)")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path
