"""Why the digit-scenes segmentation demo does not learn which digit: encoders x heads in one plain loop.

Every variant trains on the same built-in ``digit-scenes`` train split (no augmentation, per-channel
standardisation, AdamW lr 2e-3, batch 16, plain cross-entropy, no vitkit engine or transforms) and is scored on the
test split: digit-pixel accuracy (a digit pixel counts when its digit is right) and mIoU over the 11 classes.
Encoders: ``cnn`` (four 3x3 conv-BN-ReLU levels at strides 4, 8, 16, 32 after a 4x4 patchify stem, the same
pyramid as the demo backbone) or a vitkit backbone view; heads: vitkit's ``UPerHead`` at a given width, or
``concat`` (every level resized to stride 4, concatenated, one 3x3 conv-BN-ReLU of 64, a 1x1 classifier).

Usage: python benchmarks/seg_demo_diagnosis.py [--steps 600] [--variants cnn:concat,cnn:upernet32,...]
Variant syntax ``ENCODER:HEAD[:LEVELS]``: ENCODER ``cnn`` or a model name, HEAD ``concat`` or ``upernetN``,
LEVELS e.g. ``01`` for the first two levels. Prints a table and writes benchmarks/results/seg_demo_diagnosis.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.data.digit_scenes import SemanticScenes
from vitkit.models.backbone import as_backbone
from vitkit.registry import create_model
from vitkit.tasks.segmentation.heads import UPerHead, resize
from vitkit.tasks.segmentation.metrics import confusion_matrix, segmentation_metrics

DEFAULT = "cnn:concat,cnn:upernet32,cnn:upernet128,uniformer_demo_32:concat:01,uniformer_demo_32:concat,uniformer_demo_32:upernet32"


def _cbr(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv-BN-ReLU; odd kernels keep the size (divided by the stride), even ones (the patchify stem) pad nothing."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if kernel % 2 else 0),
                         nn.BatchNorm2d(cout), nn.ReLU())


class ConvPyramid(nn.Module):
    """A plain CNN with the demo backbone's pyramid: 32/64/128/128 channels at strides 4/8/16/32."""

    channels = (32, 64, 128, 128)

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleList([nn.Sequential(_cbr(3, 32, 4, 4), _cbr(32, 32)), _cbr(32, 64, stride=2),
                                     _cbr(64, 128, stride=2), _cbr(128, 128, stride=2)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out


class ConcatHead(nn.Module):
    def __init__(self, channels: list[int], num_classes: int) -> None:
        super().__init__()
        self.fuse, self.cls = _cbr(sum(channels), 64), nn.Conv2d(64, num_classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.cls(self.fuse(torch.cat([resize(m, maps[0].shape[-2:]) for m in maps], 1)))


class Net(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module, levels: list[int]) -> None:
        super().__init__()
        self.encoder, self.head, self.levels = encoder, head, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.encoder(x)
        return resize(self.head([maps[i] for i in self.levels]), x.shape[-2:])


def build(variant: str, num_classes: int) -> Net:
    enc_name, head_name, *rest = variant.split(":")
    if enc_name == "cnn":
        encoder, chans = ConvPyramid(), list(ConvPyramid.channels)
    else:
        encoder = as_backbone(create_model(enc_name))
        chans = encoder.feature_info.channels()
    levels = [int(c) for c in rest[0]] if rest else list(range(len(chans)))
    used = [chans[i] for i in levels]
    if head_name == "concat":
        head: nn.Module = ConcatHead(used, num_classes)
    elif head_name.startswith("upernet"):
        head = UPerHead(used, int(head_name[len("upernet"):]), num_classes)
    else:
        raise ValueError(f"head must be concat or upernetN, got {head_name!r}")
    return Net(encoder, head, levels)


def load(split: str, stats: tuple[torch.Tensor, torch.Tensor] | None = None):
    ds = SemanticScenes(split)
    x = torch.stack([ds[i][0] for i in range(len(ds))]).float() / 255
    y = torch.stack([ds[i][1] for i in range(len(ds))])
    mean, std = stats or (x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True))
    return (x - mean) / std, y, (mean, std)


def run(variant: str, steps: int, data, seed: int = 0) -> dict:
    (x, y), (xt, yt) = data
    torch.manual_seed(seed)
    net = build(variant, 11)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=0.01)
    t0 = time.process_time()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (16,))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 50]).argmax(1) for i in range(0, len(xt), 50)])
    digit = yt > 0
    cm = sum(confusion_matrix(p, t, 11, 255) for p, t in zip(pred, yt))
    return {"variant": variant, "steps": steps, "final_loss": loss.item(), "cpu_s": time.process_time() - t0,
            "digit_acc": ((pred == yt) & digit).sum().item() / digit.sum().item(),
            "mIoU": segmentation_metrics(cm)["mIoU"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--variants", default=DEFAULT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "seg_demo_diagnosis.json"))
    args = ap.parse_args()
    x, y, stats = load("train")
    xt, yt, _ = load("test", stats)
    rows = []
    print(f"{'variant':40s} {'digit acc':>9s} {'mIoU':>7s} {'loss':>6s} {'cpu s':>6s}   load {os.getloadavg()[0]:.1f}")
    for v in args.variants.split(","):
        r = run(v, args.steps, ((x, y), (xt, yt)))
        rows.append(r)
        print(f"{v:40s} {100 * r['digit_acc']:8.1f}% {r['mIoU']:6.2f}% {r['final_loss']:6.3f} {r['cpu_s']:6.0f}",
              flush=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "threads": torch.get_num_threads(), "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
