"""torch.compile audit: graph breaks and graphs compiled per family, traced at two input sizes each.

Traced with the ``eager`` backend (TorchDynamo decides breaks and recompiles before any backend runs, so no
code generation is paid for) and ``dynamic=True`` as ``train.compile`` compiles. Prints a table and writes
benchmarks/results/compile_audit.json. ``--full`` audits the real variants instead of small ones (minutes).

Usage: python benchmarks/compile_audit.py [--full] [--out PATH]
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
SMALL = {  # name, config overrides, two input shapes
    "vit": ("vit_demo_patch8_32", {}, [(2, 3, 32, 32), (2, 3, 48, 48)]),
    "swin": ("swin_tiny_patch4_window7_224", dict(_SMALL_SWIN, window_size=4, img_size=64),
             [(2, 3, 64, 64), (2, 3, 96, 96)]),
    "video_swin": ("swin3d_tiny", dict(_SMALL_SWIN, window_size=(2, 4, 4), img_size=64, num_frames=4),
                   [(1, 3, 4, 64, 64), (1, 3, 4, 96, 96)]),
    "uniformer": ("uniformer_demo_32", {}, [(2, 3, 32, 32), (2, 3, 64, 64)]),
    "uniformer_video": ("uniformer_demo_video_8x32", {}, [(1, 3, 8, 32, 32), (1, 3, 8, 48, 48)]),
    "mvit": ("mvit_demo_8x32", {}, [(1, 3, 8, 32, 32), (1, 3, 8, 48, 48)]),
}
FULL = {
    "vit": ("vit_small_patch16_224", {}, [(2, 3, 224, 224), (2, 3, 288, 288)]),
    "swin": ("swin_tiny_patch4_window7_224", {}, [(2, 3, 224, 224), (2, 3, 288, 288)]),
    "video_swin": ("swin3d_tiny", {}, [(1, 3, 8, 224, 224), (1, 3, 8, 256, 256)]),
    "uniformer": ("uniformer_small", {}, [(2, 3, 224, 224), (2, 3, 288, 288)]),
    "mvitv2": ("mvitv2_tiny", {}, [(2, 3, 224, 224), (2, 3, 288, 288)]),
    "mvit": ("mvit_base_16x4", {}, [(1, 3, 16, 224, 224), (1, 3, 16, 256, 256)]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the real variants (minutes) instead of small ones")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "compile_audit.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    before = B.machine_load()
    rows = {}
    for family, (name, kw, shapes) in (FULL if args.full else SMALL).items():
        t = time.perf_counter()
        a = audit(vitkit.create_model(name, drop_path_rate=0.0, **kw), shapes)
        rows[family] = {"model": name, "graph_breaks": a.graph_breaks, "reasons": a.reasons, "graphs": a.graphs,
                        "sizes": a.sizes, "seconds": time.perf_counter() - t}
        print(f"{family:<16}{name:<30} breaks {a.graph_breaks:>3}  graphs over {len(shapes)} sizes {a.graphs:>3}  "
              f"{'; '.join(sorted(set(a.reasons)))}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"environment": B.environment(), "load_before": before, "load_after": B.machine_load(),
                   "full": args.full, "rows": rows}, f, indent=2)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
