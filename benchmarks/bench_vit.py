"""ViT-B/16 at 224, batch 8: vitkit beside timm and torchvision in one process, fp32 and bf16 autocast.

Prints images/s, the ratio of vitkit to each peer, and the fraction of this CPU's measured matmul peak;
writes benchmarks/results/vit.json. Usage: python benchmarks/bench_vit.py [--threads 2] [--iters 5]
"""
from __future__ import annotations

import argparse
import os

import torch

import vitkit
from vitkit.analysis.benchmark import CLOCKS, add_ratios, format_table, matmul_peak, measure_interleaved, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall-clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "vit.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtypes.split(",")
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: matmul_peak(kinds[d], clock=args.clock) for d in dtypes}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))

    import timm
    import torchvision

    torch.manual_seed(0)
    ours = vitkit.create_model("vit_base_patch16_224").eval()
    peers = {
        "timm": timm.create_model("vit_base_patch16_224", pretrained=False).eval(),
        "torchvision": torchvision.models.vit_b_16().eval(),
    }
    vitkit.load_checkpoint(ours, peers["timm"].state_dict())  # same weights: same numbers, fair timing
    macs = vitkit.profile(ours, (3, 224, 224)).macs
    x = torch.randn(args.batch, 3, 224, 224)
    # round-robin timing: drift in machine load hits all implementations alike
    models = {"vitkit": ours, **peers}
    rows = measure_interleaved(models, "vit_base_patch16_224", x, macs, peaks, dtypes, iters=args.iters,
                               clock=args.clock)
    add_ratios(rows)
    print(format_table(rows))
    write_json(args.out, rows, peaks, benchmark="vit_base_patch16_224 forward, batch %d" % args.batch,
               clock=args.clock)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
