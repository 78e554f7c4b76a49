"""One prepared run for a lent GPU (under 8 minutes): each family's bf16 inference and training step beside
timm / torchvision, eager and compiled, model FLOP utilisation (MFU) and peak memory. Writes JSON, prints a table.

MFU = achieved FLOP/s / the device's dense bf16 peak, counting 2 FLOPs per MAC (``vitkit.profile``) for
inference and 3x the forward FLOPs for a training step (forward + backward). The peak comes from the table of
published dense bf16 figures below by device name; an unknown device falls back to a measured bf16 matmul peak
(and the JSON says which). Timing reuses ``vitkit.analysis.benchmark`` (round-robin, median and spread, CUDA
synchronised). ``--smoke`` runs the same code on the CPU with tiny models and one step (the test suite's check).

Usage: python benchmarks/gpu.py [--out benchmarks/results/gpu.json] [--overwrite] [--no-compile] [--smoke]
"""
from __future__ import annotations

import argparse
import os

import torch

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.models.compile import maybe_compile

#: published dense bf16 tensor-core peaks (FLOP/s) by a substring of the device name, most specific first
BF16_PEAKS = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12),
              ("A10G", 70e12), ("L40S", 362e12), ("L4", 121e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12)]

#: family -> (vitkit name, vitkit overrides, peer library, peer name, peer kwargs, item shape, batch)
FULL = {
    "vit": ("vit_base_patch16_224", {}, "timm", "vit_base_patch16_224", {}, (3, 224, 224), 64),
    "swin": ("swin_tiny_patch4_window7_224", {}, "timm", "swin_tiny_patch4_window7_224", {}, (3, 224, 224), 64),
    "mvitv2": ("mvitv2_tiny", {}, "timm", "mvitv2_tiny", {}, (3, 224, 224), 64),
    "uniformer": ("uniformer_small", {}, None, None, {}, (3, 224, 224), 64),
    "swin3d": ("swin3d_tiny", {}, "torchvision", "video.swin3d_t", {}, (3, 16, 224, 224), 4),
    "mvit": ("mvit_base_16x4", {}, "torchvision", "video.mvit_v1_b", {}, (3, 16, 224, 224), 4),
    "uniformer_video": ("uniformer_small_16x4", {}, None, None, {}, (3, 16, 224, 224), 4),
}
SMOKE = {
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}, "timm", "vit_tiny_patch16_224",
            {"img_size": 32, "depth": 1}, (3, 32, 32), 2),
    "mvit": ("mvit_demo_8x32", {}, None, None, {}, (3, 8, 32, 32), 1),
    "uniformer": ("uniformer_demo_32", {}, None, None, {}, (3, 32, 32), 2),
}


def device_peak(device: torch.device) -> tuple[float, str]:
    """(bf16 FLOP/s, where it came from): the published figure for a known GPU, else a measured matmul peak."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in BF16_PEAKS:
            if key in name:
                return peak, f"published dense bf16 peak of {key}"
    return B.matmul_peak(torch.bfloat16, size=4096 if device.type == "cuda" else 256, device=device), \
        "measured bf16 matmul peak"


def run_family(family: str, spec: tuple, device: torch.device, peak: float, compile: bool, rounds: int,
               warmup: int) -> list[B.BenchRow]:
    name, overrides, lib, peer_name, peer_kwargs, shape, batch = spec
    torch.manual_seed(0)
    ours = vitkit.create_model(name, **overrides)
    macs = vitkit.profile(ours, shape).macs  # counted on the CPU, before the move
    models = {"vitkit": ours.to(device)}
    if lib:
        models[lib] = B.build_peer(lib, peer_name, **peer_kwargs).to(device)
    x = torch.randn(batch, *shape, device=device)
    peaks = {"bf16": peak}
    rows = []
    for comp in ([False, True] if compile else [False]):
        tag = " compiled" if comp else ""
        timed = {k: maybe_compile(m, comp) for k, m in models.items()}
        inf = B.measure_interleaved(timed, f"{family}:{name}", x, macs, peaks, ["bf16"], iters=rounds,
                                    warmup=warmup)
        for r in inf:
            r.extra.update(kind="inference", compiled=comp,
                           peak_mem_mb=B.forward_memory(models[r.impl], x, torch.bfloat16) / 2**20)
        tr = B.measure_train_interleaved(timed, f"{family}:{name}", x, macs, peaks, ["bf16"], rounds=rounds,
                                         warmup=warmup, compiled=comp, eager=models)
        for r in tr:
            r.extra["kind"] = "train"
        for group in (inf, tr):
            for r in group:
                r.impl += tag
            B.add_ratios(group, ours="vitkit" + tag)
        rows += inf + tr
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gpu.json"))
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--families", help="comma-separated subset of the families")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny models, one step (the test suite's check)")
    args = ap.parse_args(argv)
    suite = SMOKE if args.smoke else FULL
    if args.families:
        suite = {k: suite[k] for k in args.families.split(",")}
    if args.smoke:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        ap.error("no CUDA device here; use --smoke for the CPU check")
    before = B.machine_load()
    print(B.describe_load(before))
    peak, source = device_peak(device)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: "
          f"bf16 peak {peak / 1e12:.3f} TFLOP/s ({source})")
    rounds, warmup = (1, 1) if args.smoke else (10, 3)
    rows, failed = [], {}
    for family, spec in suite.items():
        try:
            rows += run_family(family, spec, device, peak, compile=not args.no_compile and not args.smoke,
                               rounds=rounds, warmup=warmup)
        except Exception as e:  # noqa: BLE001 - one family failing must not lose the others' figures
            failed[family] = f"{type(e).__name__}: {e}"
            print(f"  {family} FAILED: {failed[family]}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(B.format_table(rows, unit="items/s").replace("%peak", "  MFU"))
    for r in rows:
        mem = r.extra.get("peak_train_mem_mb", r.extra.get("peak_mem_mb", float("nan")))
        print(f"  {r.impl:<22}{r.model:<40}{r.extra['kind']:<10} MFU {100 * r.frac_peak:5.1f} %  "
              f"peak memory {mem:.0f} MB")
    after = B.machine_load()
    path = B.free_path(args.out, args.overwrite)
    B.write_json(path, rows, {"bf16": peak}, peak_source=source, smoke=args.smoke, failed=failed,
                 load_before=before, load_after=after,
                 benchmark="bf16 inference and training step (forward + backward + AdamW), MFU against the peak")
    print("wrote", path)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
