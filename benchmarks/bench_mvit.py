"""MViT-B 16x4 (1x3x16x224x224) beside torchvision ``mvit_v1_b``, in one process, fp32 and bf16 autocast, same
weights in both; plus the peak memory of one training step with and without activation checkpointing.

Prints clips/s, the ratio of vitkit to torchvision and the fraction of this CPU's measured matmul peak; writes
benchmarks/results/mvit.json. Peak memory is the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) during the first forward + backward of batch 1 (weights' gradients included), measured in a
fresh subprocess per setting.
Usage: python benchmarks/bench_mvit.py [--threads 2] [--iters 3] [--skip-memory] [--skip-speed]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

import vitkit
from vitkit.analysis.benchmark import CLOCKS, add_ratios, format_table, matmul_peak, measure_interleaved, write_json


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def train_step_peak_mb(name: str, checkpointing: bool, frames: int, size: int, threads: int) -> dict:
    """Peak RSS growth (MB) of one forward + backward of batch 1 (run inside a fresh process)."""
    torch.set_num_threads(threads)
    model = vitkit.create_model(name).train().set_grad_checkpointing(checkpointing)
    x = torch.randn(1, 3, frames, size, size)
    target = torch.tensor([0])
    # the first step from a fresh process: a later step would start from an RSS that already holds the
    # allocator's freed-but-kept activation memory and so under-report. Gradients (the size of the weights)
    # are allocated in this step in both settings.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_kb("VmRSS")
    torch.nn.functional.cross_entropy(model(x), target).backward()
    peak = _status_kb("VmHWM")
    return {"checkpointing": checkpointing, "peak_growth_mb": (peak - base) / 1024, "base_rss_mb": base / 1024,
            "peak_rss_mb": peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall-clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "mvit.json"))
    args = ap.parse_args()
    if args.memory_child is not None:
        print(json.dumps(train_step_peak_mb("mvit_base_16x4", args.memory_child == "1", 16, 224, args.threads)))
        return
    torch.set_num_threads(args.threads)
    dtypes = args.dtypes.split(",")
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: matmul_peak(kinds[d], clock=args.clock) for d in dtypes}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    rows, memory = [], []
    if not args.skip_speed:
        import torchvision

        torch.manual_seed(0)
        peer = torchvision.models.video.mvit_v1_b().eval()
        ours = vitkit.create_model("mvit_base_16x4").eval()
        vitkit.load_checkpoint(ours, peer.state_dict())
        macs = vitkit.profile(ours, (3, 16, 224, 224)).macs
        x = torch.randn(1, 3, 16, 224, 224)
        with torch.inference_mode():
            assert (ours(x) - peer(x)).abs().max().item() < 1e-4, "the two models disagree"
        rows = measure_interleaved({"vitkit": ours, "torchvision": peer}, "mvit_base_16x4 16x224x224", x, macs,
                                   peaks, dtypes, iters=args.iters, clock=args.clock)
        add_ratios(rows)
        print(format_table(rows, unit="clip/s"))
        del ours, peer
    if not args.skip_memory:
        for ckpt in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--memory-child", ckpt, "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            memory.append(json.loads(out.strip().splitlines()[-1]))
        for m in memory:
            print(f"training step, batch 1, 16x224x224, activation checkpointing {'on ' if m['checkpointing'] else 'off'}:"
                  f" peak memory growth {m['peak_growth_mb']:.0f} MB (process RSS {m['base_rss_mb']:.0f} MB before,"
                  f" {m['peak_rss_mb']:.0f} MB peak)")
    write_json(args.out, rows, peaks, benchmark="MViT-B 16x4 vs torchvision mvit_v1_b, batch 1, 16x224x224",
               clock=args.clock,
               train_step_memory=memory)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
