"""Swin-T at 224 (batch 8) beside timm and torchvision, and Video Swin-T (1x3x16x224x224) beside torchvision
``swin3d_t``, in one process, fp32 and bf16 autocast, same weights in every implementation.

Prints items/s, the ratio of vitkit to each peer and the fraction of this CPU's measured matmul peak; writes
benchmarks/results/swin.json. Usage: python benchmarks/bench_swin.py [--threads 2] [--iters 5] [--skip-video]
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
    ap.add_argument("--video-iters", type=int, default=3)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall-clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--video-dtypes", default="fp32,bf16")
    ap.add_argument("--skip-image", action="store_true")
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "swin.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtypes.split(",")
    vdtypes = args.video_dtypes.split(",")
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: matmul_peak(kinds[d], clock=args.clock) for d in sorted(set(dtypes) | set(vdtypes))}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))

    import timm
    import torchvision

    torch.manual_seed(0)
    rows = []
    if not args.skip_image:
        ours = vitkit.create_model("swin_tiny_patch4_window7_224").eval()
        peers = {
            "timm": timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval(),
            "torchvision": torchvision.models.swin_t().eval(),
        }
        vitkit.load_checkpoint(ours, peers["torchvision"].state_dict())
        macs = vitkit.profile(ours, (3, 224, 224)).macs
        x = torch.randn(args.batch, 3, 224, 224)
        image_rows = measure_interleaved(
            {"vitkit": ours, **peers}, "swin_tiny_patch4_window7_224", x, macs, peaks, dtypes, iters=args.iters
        )
        add_ratios(image_rows)
        print(format_table(image_rows))
        rows += image_rows
        del ours, peers
    if not args.skip_video:
        ours = vitkit.create_model("swin3d_tiny").eval()
        peer = torchvision.models.video.swin3d_t().eval()
        vitkit.load_checkpoint(ours, peer.state_dict())
        macs = vitkit.profile(ours, (3, 16, 224, 224)).macs
        x = torch.randn(1, 3, 16, 224, 224)
        video_rows = measure_interleaved(
            {"vitkit": ours, "torchvision": peer}, "swin3d_tiny 16x224x224", x, macs, peaks, vdtypes,
            iters=args.video_iters, clock=args.clock,
        )
        add_ratios(video_rows)
        print(format_table(video_rows, unit="clip/s"))
        rows += video_rows
    write_json(args.out, rows, peaks, benchmark=f"Swin-T 224 batch {args.batch}; Video Swin-T 1x3x16x224x224",
               clock=args.clock)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
