"""UperNet + Swin-T (the ADE20K recipe's model: UperNet 512 channels, auxiliary FCN 256 on stage 3, 150 classes)
with vitkit's Swin-T backbone view, beside the same head on timm's Swin-T (``features_only``), a batch of two
512x512 images by default (the recipe's 2 per GPU; the pyramid pooling's 1x1 BatchNorm needs more than one value
per channel in training), in one process.

For each: inference images/s (``Segmentor.inference``, whole image, logits at the input size) and training-step
images/s (forward, CE + 0.4 x auxiliary CE, backward, SGD step), median / min / max over interleaved rounds, and
the peak bytes allocated in one inference and one training step (the CPU allocator's profiler events,
``max_memory_allocated`` on CUDA). The load average is recorded. Writes benchmarks/results/seg.json (a new
time-stamped file when one exists, unless --overwrite).
Usage: python benchmarks/bench_seg.py [--threads 2] [--rounds 3] [--size 512 512] [--batch 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn as nn

import vitkit
from vitkit.analysis.benchmark import (describe_load, environment, format_kind_rows, free_path, kind_rows, machine_load,
                                      time_kinds_interleaved)
from vitkit.tasks.segmentation.segmentor import build_segmentor, segmentation_loss


class TimmBackbone(nn.Module):
    """timm's ``features_only`` Swin (NHWC maps) as an NCHW backbone with ``feature_info``."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model("swin_tiny_patch4_window7_224", features_only=True, img_size=size,
                                      pretrained=False, drop_path_rate=0.3)
        self.feature_info = self.body.feature_info

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.permute(0, 3, 1, 2).contiguous() for f in self.body(x)]


def _train_step(model, opt, x, y) -> None:
    model.train()
    loss = segmentation_loss(model(x), y, 255, 0.4)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _infer(model, x) -> None:
    with torch.inference_mode():
        model.inference(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "seg.json"))
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (steadier on a shared machine; use with --threads 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    h, w = args.size
    torch.manual_seed(0)
    ours = vitkit.create_model("swin_tiny_patch4_window7_224", features_only=True, drop_path_rate=0.3)
    models = {
        "vitkit UperNet Swin-T": build_segmentor(ours, 150).to(dev),
        "timm Swin-T + same UperNet": build_segmentor(TimmBackbone((h, w)), 150).to(dev),
    }
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4) for k, m in models.items()}
    x = torch.randn(args.batch, 3, h, w, device=dev)
    y = torch.randint(0, 150, (args.batch, h, w), device=dev)
    load_before = machine_load()
    print(describe_load(load_before))
    times, peaks = time_kinds_interleaved(
        models, {"inference": lambda n, m: _infer(m, x), "train step": lambda n, m: _train_step(m, opts[n], x, y)},
        args.rounds, args.clock, dev)
    load_after = machine_load()
    names = list(models)
    rows = kind_rows(times, peaks, args.batch, ours=names[0], peer=names[1])
    print(format_kind_rows(rows))
    print(describe_load(load_after))
    path = free_path(args.out, args.overwrite)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"benchmark": f"UperNet Swin-T at {h}x{w}, batch {args.batch}, {args.threads} threads, {dev.type}, "
                                f"{args.clock} clock",
                   "environment": environment(), "load_before": load_before, "load_after": load_after,
                   "rows": rows}, f, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
