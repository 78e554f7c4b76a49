"""UniFormer forward throughput beside a Swin / MViT of similar MACs, in one process, fp32 and bf16 autocast.

Image: ``uniformer_small`` (3.6 GMACs) at 224, batch 8, beside Swin-T (4.5 GMACs; vitkit's
``swin_tiny_patch4_window7_224`` if registered, and timm's where timm is installed, else torchvision ``swin_t``).
Video: ``uniformer_small_16x4`` (41.7 GMACs per view), batch 1, beside vitkit's ``mvit_small_16x4`` (~30 GMACs) and ``swin3d_tiny`` at 16 frames
(~44 GMACs), else torchvision ``mvit_v1_b`` (70.6 GMACs). Architectures differ, so besides items/s the table
gives the fraction of this CPU's measured matmul peak (2 * MACs * items/s / peak), which is comparable across
models. ``--profile`` prints where the time goes (torch.profiler, top operators per model).

Usage: python benchmarks/bench_uniformer.py [--threads 2] [--iters 5] [--profile] [--only image|video]
Writes benchmarks/results/uniformer.json.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn as nn

import vitkit
from vitkit.analysis.benchmark import (
    CLOCKS, add_ratios, autocast_context, format_table, matmul_peak, measure, write_json,
)


def _peer_image() -> list[tuple[str, str, nn.Module, int]]:
    out = []
    if "swin_tiny_patch4_window7_224" in vitkit.list_models("swin*"):
        m = vitkit.create_model("swin_tiny_patch4_window7_224").eval()
        out.append(("vitkit-swin", "swin_tiny_patch4_window7_224", m, vitkit.profile(m, (3, 224, 224)).macs))
    try:  # the peer library's own Swin-T (issue 14's yardstick: UniFormer-S image vs timm Swin-T)
        import timm

        m = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
        out.append(("timm-swin", "swin_tiny_patch4_window7_224", m, int(4.49e9)))
    except ImportError:
        pass
    if not out:
        import torchvision

        out.append(("torchvision", "swin_t", torchvision.models.swin_t().eval(), int(4.49e9)))
    return out


def _peers_video() -> list[tuple[str, str, nn.Module, int]]:
    out = []
    if "mvit_small_16x4" in vitkit.list_models("mvit*"):
        m = vitkit.create_model("mvit_small_16x4").eval()
        out.append(("vitkit-mvit", "mvit_small_16x4", m, vitkit.profile(m, (3, 16, 224, 224)).macs))
    if "swin3d_tiny" in vitkit.list_models("swin*"):
        m = vitkit.create_model("swin3d_tiny", num_frames=16).eval()
        out.append(("vitkit-swin", "swin3d_tiny (16x224)", m, vitkit.profile(m, (3, 16, 224, 224)).macs))
    if not out:
        import torchvision

        out.append(("torchvision", "mvit_v1_b", torchvision.models.video.mvit_v1_b().eval(), int(70.599e9)))
    return out


def where_time_goes(model: nn.Module, x: torch.Tensor, dtype: str, top: int = 8) -> list[tuple[str, float]]:
    """Share of self CPU time per operator over two forwards (after a warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    amp = torch.bfloat16 if dtype == "bf16" else None
    with torch.inference_mode(), autocast_context(x.device, amp):
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda r: -r[1])
    return rows[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall-clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--only", choices=["image", "video"])
    ap.add_argument("--profile", action="store_true", help="print the top operators by self CPU time")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "uniformer.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtypes.split(",")
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: matmul_peak(kinds[d], clock=args.clock) for d in dtypes}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    torch.manual_seed(0)

    suites = []
    if args.only in (None, "image"):
        ours = vitkit.create_model("uniformer_small").eval()
        suites.append(("image", torch.randn(8, 3, 224, 224),
                       [("vitkit", "uniformer_small", ours, vitkit.profile(ours, (3, 224, 224)).macs), *_peer_image()]))
    if args.only in (None, "video"):
        ours = vitkit.create_model("uniformer_small_16x4").eval()
        suites.append(("video", torch.randn(1, 3, 16, 224, 224),
                       [("vitkit", "uniformer_small_16x4", ours, vitkit.profile(ours, (3, 16, 224, 224)).macs),
                        *_peers_video()]))

    all_rows, profiles = [], {}
    for kind, x, impls in suites:
        rows = []
        for d in dtypes:  # interleave implementations per precision: drifting machine load hits all alike
            for impl, name, model, macs in impls:
                rows += measure(impl, name, model, x, macs, peaks, dtypes=(d,), iters=args.iters,
                                clock=args.clock)
        add_ratios(rows)
        print(f"\n{kind}: batch {x.shape[0]}, input {tuple(x.shape[1:])}")
        print(format_table(rows, unit="img/s" if kind == "image" else "clips/s"))
        all_rows += rows
        if args.profile:
            for impl, name, model, _ in impls:
                for d in dtypes:
                    top = where_time_goes(model, x, d)
                    profiles[f"{name} {d}"] = top
                    print(f"  {name} {d}: " + ", ".join(f"{k} {100 * s:.0f}%" for k, s in top))
    write_json(args.out, all_rows, peaks, benchmark="UniFormer forward beside Swin / MViT of similar MACs", clock=args.clock,
               profiles={k: [[n, s] for n, s in v] for k, v in profiles.items()})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
