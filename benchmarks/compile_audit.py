"""torch.compile audit: graph breaks, graphs compiled and recompiles per family, one model fed three input sizes.

Traced with the ``eager`` backend (TorchDynamo decides breaks and recompiles before any backend runs, so no
code generation is paid for) and ``dynamic=True`` as ``train.compile: dynamic`` compiles. A recompile is a graph compiled
after the first size; the JSON keeps the failed guard behind each. Prints a table and writes
benchmarks/results/compile_audit.json. ``--full`` audits the real variants instead of small ones (minutes).

Usage: python benchmarks/compile_audit.py [--full] [--only FAMILY,...] [--amp bf16] [--out PATH]

``--amp bf16`` traces under CPU bf16 autocast (``train.amp: bf16``; default JSON compile_audit_bf16.json).

``--only`` audits those families and replaces their rows in an existing JSON at ``--out`` (others kept).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.analysis.graph_breaks import audit

_SMALL_SWIN = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
# Three sizes each, the model's own size first. Where a later size still recompiles, the cause is torch's or
# the model's own branch (see the JSON's reasons): a 1x1 map (UniFormer demo at 32: torch specialises sizes 0
# and 1), or a Swin stage map crossing its window size (the small Swin: stage 3 is clipped at 64, not at 96).
SMALL = {  # name, config overrides, input shapes
    "vit": ("vit_demo_patch8_32", {}, [(2, 3, 32, 32), (2, 3, 48, 48), (2, 3, 64, 64)]),
    "swin": ("swin_tiny_patch4_window7_224", dict(_SMALL_SWIN, window_size=4, img_size=64),
             [(2, 3, 64, 64), (2, 3, 96, 96), (2, 3, 128, 128)]),
    "swin_2stage": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(2, 2), num_heads=(1, 1),
                                                         window_size=4, img_size=64),
                    [(2, 3, 64, 64), (2, 3, 80, 80), (2, 3, 72, 72)]),
    "video_swin": ("swin3d_tiny", dict(_SMALL_SWIN, window_size=(2, 4, 4), img_size=64, num_frames=4),
                   [(1, 3, 4, 64, 64), (1, 3, 4, 96, 96), (1, 3, 4, 128, 128)]),
    "uniformer": ("uniformer_demo_32", {}, [(2, 3, 32, 32), (2, 3, 64, 64), (2, 3, 96, 96)]),
    "uniformer_video": ("uniformer_demo_video_8x32", {}, [(1, 3, 8, 32, 32), (1, 3, 8, 64, 64),
                                                          (1, 3, 8, 96, 96)]),
    "mvit": ("mvit_demo_8x32", {}, [(1, 3, 8, 32, 32), (1, 3, 8, 48, 48), (1, 3, 8, 64, 64)]),
    "mvitv2": ("mvitv2_tiny", dict(embed_dim=16), [(2, 3, 224, 224), (2, 3, 64, 64), (2, 3, 96, 96)]),
}
FULL = {
    "vit": ("vit_small_patch16_224", {}, [(2, 3, 224, 224), (2, 3, 256, 256), (2, 3, 288, 288)]),
    "swin": ("swin_tiny_patch4_window7_224", {}, [(2, 3, 224, 224), (2, 3, 256, 256), (2, 3, 288, 288)]),
    "video_swin": ("swin3d_tiny", {}, [(1, 3, 8, 224, 224), (1, 3, 8, 256, 256), (1, 3, 8, 288, 288)]),
    "uniformer": ("uniformer_small", {}, [(2, 3, 224, 224), (2, 3, 256, 256), (2, 3, 288, 288)]),
    "mvitv2": ("mvitv2_tiny", {}, [(2, 3, 224, 224), (2, 3, 256, 256), (2, 3, 288, 288)]),
    "mvit": ("mvit_base_16x4", {}, [(1, 3, 16, 224, 224), (1, 3, 16, 256, 256), (1, 3, 16, 288, 288)]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the real variants (minutes) instead of small ones")
    ap.add_argument("--out", default=None, help="default: results/compile_audit.json (--amp bf16: _bf16 added)")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none", help="trace under CPU autocast in this dtype")
    ap.add_argument("--only", default="", help="comma-separated families; their rows replace those in --out")
    args = ap.parse_args(argv)
    amp_dtype = torch.bfloat16 if args.amp == "bf16" else None
    if args.out is None:
        name = "compile_audit.json" if amp_dtype is None else "compile_audit_bf16.json"
        args.out = os.path.join(os.path.dirname(__file__), "results", name)
    torch.set_num_threads(1)
    before = B.machine_load()
    suite = FULL if args.full else SMALL
    only = [f for f in args.only.split(",") if f]
    if set(only) - set(suite):
        ap.error(f"unknown --only {sorted(set(only) - set(suite))}; choose from {', '.join(suite)}")
    rows = {}
    if only and os.path.exists(args.out):
        with open(args.out) as f:
            rows = json.load(f)["rows"]
    for family, (name, kw, shapes) in suite.items():
        if only and family not in only:
            continue
        t = time.perf_counter()
        a = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), shapes, amp_dtype=amp_dtype)
        rows[family] = {"model": name, "load_before": before, "graph_breaks": a.graph_breaks, "reasons": a.reasons, "graphs": a.graphs,
                        "sizes": a.sizes, "graphs_per_size": a.graphs_per_size, "recompiles": a.recompiles,
                        "recompile_reasons": a.recompile_reasons, "seconds": time.perf_counter() - t}
        print(f"{family:<16}{name:<30} breaks {a.graph_breaks:>3}  graphs over {len(shapes)} sizes {a.graphs:>3}  "
              f"recompiles {a.recompiles:>2}  {'; '.join(sorted(set(a.reasons)))}", flush=True)
        for why in a.recompile_reasons:
            print(f"{'':<16}recompile: {why.split('  # ')[0][-90:]}  # {why.split('  # ')[-1][:110]}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"environment": B.environment(), "load_before": before, "load_after": B.machine_load(),
                   "full": args.full, "amp": args.amp, "rows": rows}, f, indent=2)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
