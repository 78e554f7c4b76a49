"""Mask R-CNN Swin-T (vitkit backbone view + FPN on torchvision's Mask R-CNN) beside torchvision's own
``maskrcnn_resnet50_fpn`` (similar FLOPs at this size), one image at 800x1333 by default, in one process.

For each model: inference images/s and training-step images/s (forward with targets, backward, SGD step),
median / min / max over interleaved rounds (drift in machine load hits both alike), and the peak bytes of live
tensors in one inference forward and one training step (op-level count on the CPU, ``max_memory_allocated`` on
CUDA). The load average is recorded. Writes benchmarks/results/det.json (a new time-stamped file when one exists,
unless --overwrite). Usage: python benchmarks/bench_det.py [--threads 2] [--rounds 3] [--size 800 1333]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from vitkit.analysis.benchmark import (describe_load, environment, format_kind_rows, free_path, kind_rows, machine_load,
                                      time_kinds_interleaved)
from vitkit.tasks.detection_model import build_detector


def _targets(h: int, w: int, n: int = 5) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = 40 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.25, h * 0.25])
    boxes = torch.cat([xy, xy + wh], 1)
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    return [{"boxes": boxes, "labels": torch.randint(1, 81, (n,), generator=g), "masks": masks}]


def _train_step(model, opt, images, targets) -> None:
    model.train()
    loss = sum(model(images, targets).values())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _infer(model, images) -> None:
    model.eval()
    with torch.inference_mode():
        model(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "det.json"))
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (steadier on a shared machine; use with --threads 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    h, w = args.size
    torch.manual_seed(0)
    models = {
        "vitkit Mask R-CNN Swin-T": build_detector("swin_tiny_patch4_window7_224", 80, min_size=h, max_size=w),
        "torchvision maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                    num_classes=81, min_size=h, max_size=w),
    }
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4) for k, m in models.items()}
    images, targets = [torch.rand(3, h, w)], _targets(h, w)
    load_before = machine_load()
    print(describe_load(load_before))
    times, peaks = time_kinds_interleaved(
        models, {"inference": lambda n, m: _infer(m, images),
                 "train step": lambda n, m: _train_step(m, opts[n], images, targets)}, args.rounds, args.clock)
    load_after = machine_load()
    names = list(models)
    rows = kind_rows(times, peaks, 1, ours=names[0], peer=names[1])
    print(format_kind_rows(rows))
    print(describe_load(load_after))
    path = free_path(args.out, args.overwrite)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"benchmark": f"Mask R-CNN at {h}x{w}, batch 1, {args.threads} threads, {args.clock} clock",
                   "environment": environment(), "load_before": load_before, "load_after": load_after,
                   "rows": rows}, f, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
