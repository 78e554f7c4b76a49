"""One prepared run for a lent GPU (under 8 minutes): each family's bf16 inference and training step beside
timm / torchvision, eager and compiled, model FLOP utilisation (MFU) and peak memory. Writes JSON, prints a table.

MFU = achieved FLOP/s / the device's dense bf16 peak, counting 2 FLOPs per MAC (``vitkit.profile``) for
inference and 3x the forward FLOPs for a training step (forward + backward). The peak comes from the table of
published dense bf16 figures below by device name; an unknown device falls back to a measured bf16 matmul peak
(and the JSON says which). Timing reuses ``vitkit.analysis.benchmark`` (round-robin, median and spread, CUDA
synchronised). Each family's fp32 logits and gradients on the device are also compared with a float64 copy on the
CPU (``agreement`` in the JSON). The eager pass runs every family first; compiled families follow while
``--budget-s`` lasts, and the JSON is rewritten after every family, so a run cut off at a lease's limit keeps
what it measured. ``--smoke`` runs the same code on the CPU with tiny models and one step (the test suite's check).

Usage: python benchmarks/gpu.py [--out benchmarks/results/gpu.json] [--overwrite] [--no-compile] [--budget-s S]
       [--families vit,swin] [--smoke]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.models.compile import maybe_compile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import TRAIN_DROP_PATH, drop_path_kwargs  # noqa: E402 - the training benchmark's drop-path rule

#: published dense bf16 tensor-core peaks (FLOP/s) by a substring of the device name, most specific first
BF16_PEAKS = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12),
              ("A10G", 70e12), ("L40S", 362e12), ("L4", 121e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12)]

#: family -> (vitkit name, vitkit overrides, peer library, peer name, peer kwargs, item shape, batch)
FULL = {
    "vit": ("vit_base_patch16_224", {}, "timm", "vit_base_patch16_224", {}, (3, 224, 224), 64),
    "swin": ("swin_tiny_patch4_window7_224", {}, "timm", "swin_tiny_patch4_window7_224", {}, (3, 224, 224), 64),
    "mvitv2": ("mvitv2_tiny", {}, "timm", "mvitv2_tiny", {}, (3, 224, 224), 64),
    "uniformer": ("uniformer_small", {}, "timm", "swin_tiny_patch4_window7_224", {}, (3, 224, 224), 64),
    "swin3d": ("swin3d_tiny", {}, "torchvision", "video.swin3d_t", {}, (3, 16, 224, 224), 4),
    "mvit": ("mvit_base_16x4", {}, "torchvision", "video.mvit_v1_b", {}, (3, 16, 224, 224), 4),
    "uniformer_video": ("uniformer_small_16x4", {}, "torchvision", "video.mvit_v1_b", {}, (3, 16, 224, 224), 4),
}
#: the compiled pass's order, most wanted first (it runs while the budget lasts): Swin (its fallback to eager under
#: torch 2.11 is fixed but unmeasured on a GPU), then the families never compiled on one; ViT-B was, on 2026-12-04
COMPILE_ORDER = ("swin", "uniformer", "mvitv2", "mvit", "swin3d", "uniformer_video", "vit")
SMOKE = {
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}, "timm", "vit_tiny_patch16_224",
            {"img_size": 32, "depth": 1}, (3, 32, 32), 2),
    "mvit": ("mvit_demo_8x32", {}, None, None, {}, (3, 8, 32, 32), 1),
    "uniformer": ("uniformer_demo_32", {}, "timm", "vit_tiny_patch16_224", {"img_size": 32, "depth": 1}, (3, 32, 32),
                  2),
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


#: families whose peer is another architecture (UniFormer's goals are ratios to the Swin-T / MViT-B of one run):
#: the peer is labelled with its model name there
AGAINST_OTHER_ARCHITECTURE = {"uniformer", "uniformer_video"}


def peer_label(family: str, lib: str, peer_name: str) -> str:
    """``lib``, or ``"lib model"`` where the peer is another architecture (:data:`AGAINST_OTHER_ARCHITECTURE`)."""
    return f"{lib} {peer_name.split('.')[-1]}" if family in AGAINST_OTHER_ARCHITECTURE else lib


def against_float64(model: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, torch.Tensor | None, torch.Tensor]]]:
    """``model``'s fp32 forward and backward of ``x`` on ``device`` (TF32 off), and ``ref``'s (a CPU copy of
    ``model`` taken before its move to ``device``) in float64; eval mode (no dropout or drop path), loss = sum of
    the logits. Returns (logits, reference logits, [(parameter name, its gradient or None, the reference's)]) for
    the parameters that have a reference gradient."""
    ref = ref.to(torch.float64).eval()
    out_ref = ref(x.double())
    out_ref.sum().backward()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model.eval().zero_grad(set_to_none=True)
        out = model(x.to(device))
        out.sum().backward()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    grads = [(n, p.grad, q.grad) for (n, p), q in zip(model.named_parameters(), ref.parameters())
             if q.grad is not None]
    return out, out_ref.detach(), grads


def agreement(model: torch.nn.Module, ref: torch.nn.Module, shape: tuple, device: torch.device) -> dict[str, float]:
    """Relative error ``|a - ref| / |ref|`` of the fp32 logits and parameter gradients on ``device`` (TF32 off)
    against a float64 copy on the CPU (:func:`against_float64`, one random item): the device's kernels (SDPA
    backends, cuDNN, vitkit's device-gated paths) must compute what the CPU does."""
    torch.manual_seed(1)
    out, out_ref, named = against_float64(model, ref, torch.randn(1, *shape), device)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a.detach().double().cpu() - b).norm() / b.norm().clamp_min(1e-300)).item()

    grads = [(g, r) for _, g, r in named]
    missing = sum(g is None for g, _ in grads)
    grad = rel(torch.cat([g.flatten() for g, _ in grads if g is not None]),
               torch.cat([r.flatten() for g, r in grads if g is not None]))
    model.zero_grad(set_to_none=True)
    return {"logits_rel_err": rel(out, out_ref), "grad_rel_err": grad, "grads_missing": missing}


def with_training_drop_path(spec: tuple) -> tuple:
    """``spec`` with both models at their architecture's paper drop-path rate, as ``bench_train.py`` trains them
    (:data:`bench_train.TRAIN_DROP_PATH`); a spec's own keywords win, and models outside that table keep theirs."""
    name, overrides, lib, peer_name, peer_kwargs, shape, batch = spec
    if name in TRAIN_DROP_PATH:
        overrides = {"drop_path_rate": TRAIN_DROP_PATH[name], **overrides}
        if lib:
            peer_kwargs = {**drop_path_kwargs(lib, peer_name), **peer_kwargs}
    return name, overrides, lib, peer_name, peer_kwargs, shape, batch


def run_family(family: str, spec: tuple, device: torch.device, peak: float, compile: bool, rounds: int,
               warmup: int, check: bool = False) -> tuple[list[B.BenchRow], dict[str, float]]:
    """Rows for one family (eager, or compiled when ``compile``), and with ``check`` its :func:`agreement`."""
    name, overrides, lib, peer_name, peer_kwargs, shape, batch = with_training_drop_path(spec)
    torch.manual_seed(0)
    ours = vitkit.create_model(name, **overrides)
    macs = vitkit.profile(ours, shape).macs  # counted on the CPU, before the move
    ref = copy.deepcopy(ours) if check else None
    models = {"vitkit": ours.to(device)}
    agree = {}
    if check:
        try:
            agree = agreement(ours, ref, shape, device)
        except Exception as e:  # noqa: BLE001 - a failed check is reported, the timing still runs
            agree = {"error": f"{type(e).__name__}: {e}"[:2000]}
            print(f"  {family}: agreement check FAILED: {agree['error'][:300]}", flush=True)
        del ref
    if "logits_rel_err" in agree:
        print(f"  {family}: fp32 on {device.type} vs float64 on the CPU: logits {agree['logits_rel_err']:.1e}, "
              f"gradients {agree['grad_rel_err']:.1e}", flush=True)
    if lib:
        # the peer's own name where it is another architecture (UniFormer against Swin-T / MViT-B)
        models[peer_label(family, lib, peer_name)] = B.build_peer(lib, peer_name, **peer_kwargs).to(device)
    x = torch.randn(batch, *shape, device=device)
    peaks = {"bf16": peak}
    tag = " compiled" if compile else ""
    timed = {k: maybe_compile(m, compile) for k, m in models.items()}
    inf = B.measure_interleaved(timed, f"{family}:{name}", x, macs, peaks, ["bf16"], iters=rounds, warmup=warmup)
    for r in inf:
        r.extra.update(kind="inference", compiled=compile,
                       peak_mem_mb=B.forward_memory(timed[r.impl], x, torch.bfloat16) / 2**20)
    tr = B.measure_train_interleaved(timed, f"{family}:{name}", x, macs, peaks, ["bf16"], rounds=rounds,
                                     warmup=warmup, compiled=compile)
    for r in tr:
        r.extra["kind"] = "train"
    for group in (inf, tr):
        for r in group:
            r.impl += tag
        B.add_ratios(group, ours="vitkit" + tag)
    for r in inf + tr:
        print(f"  {r.impl:<20}{family:<16}{r.extra['kind']:<10}{r.latency_ms:9.2f} ms  MFU {100 * r.frac_peak:5.1f} %"
              f"  {' '.join(f'{k} {v:.2f}x' for k, v in r.ratios.items())}", flush=True)
    return inf + tr, agree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gpu.json"))
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--families", help="comma-separated subset of the families")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="start no compiled family after this many seconds (the eager pass always runs in full)")
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
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    else:
        ap.error("no CUDA device here; use --smoke for the CPU check")
    start = time.perf_counter()
    before = B.machine_load()
    print(B.describe_load(before), f"torch {torch.__version__}", flush=True)
    peak, source = device_peak(device)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: "
          f"bf16 peak {peak / 1e12:.3f} TFLOP/s ({source})", flush=True)
    rounds, warmup = (1, 1) if args.smoke else (10, 3)
    path = B.free_path(args.out, args.overwrite)
    rows: list[B.BenchRow] = []
    failed: dict[str, str] = {}
    agree: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    # eager for every family first, then compiled while the budget lasts: a run cut short keeps the eager figures
    passes = [False] if args.smoke or args.no_compile else [False, True]
    for compiled in passes:
        order = sorted(suite, key=lambda f: COMPILE_ORDER.index(f) if f in COMPILE_ORDER else len(COMPILE_ORDER)) \
            if compiled else list(suite)
        for family in order:
            spec = suite[family]
            key = family + (" compiled" if compiled else "")
            if compiled and time.perf_counter() - start > args.budget_s:
                skipped.append(key)
                continue
            try:
                got, agree_f = run_family(family, spec, device, peak, compile=compiled, rounds=rounds,
                                          warmup=warmup, check=not compiled)
                rows += got
                if agree_f:
                    agree[family] = agree_f
            except Exception as e:  # noqa: BLE001 - one family failing must not lose the others' figures
                failed[key] = f"{type(e).__name__}: {e}"[:2000]
                print(f"  {key} FAILED: {failed[key][:300]}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            # written after every family, so that a run stopped at its time limit keeps what it measured
            B.write_json(path, rows, {"bf16": peak}, peak_source=source, smoke=args.smoke, failed=failed,
                         agreement=agree, skipped_for_time=skipped, load_before=before,
                         load_after=B.machine_load(), elapsed_s=time.perf_counter() - start,
                         benchmark="bf16 inference and training step (forward + backward + AdamW), MFU against "
                                   "the peak; agreement: fp32 on the device vs float64 on the CPU")
    print(B.format_table(rows, unit="items/s").replace("%peak", "  MFU"))
    for r in rows:
        mem = r.extra.get("peak_train_mem_mb", r.extra.get("peak_mem_mb", float("nan")))
        first = f"  first step {r.extra['first_step_wall_s']:.1f} s" if r.extra.get("compiled") and \
            "first_step_wall_s" in r.extra else ""
        print(f"  {r.impl:<22}{r.model:<40}{r.extra['kind']:<10} MFU {100 * r.frac_peak:5.1f} %  "
              f"peak memory {mem:.0f} MB{first}")
    if skipped:
        print("skipped for time:", ", ".join(skipped))
    print(f"wrote {path} after {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
