"""``vitkit benchmark NAME [--against timm|torchvision] [--sizes 224,384,512] [--compile [--dynamic]]``.

Throughput and latency (median, with min / max over the rounds) in fp32 and bf16, peak forward memory and the
fraction of this machine's measured matmul peak, with the peer implementation timed round-robin in the same
process; ``--sizes`` adds the resolution-scaling plot (latency, MACs, attention MACs and memory against input
pixels, fitted exponents). The machine's load average is printed and recorded beside the figures. Existing
result files are never replaced unless ``--overwrite`` is given (a time-stamped name is used instead), and a
fraction of peak above 100 % - a peak measured under other load than the run - is refused, not written.
"""
from __future__ import annotations

import argparse
import importlib
import os

NAME = "benchmark"
HELP = "throughput/latency/memory in fp32 and bf16 beside timm or torchvision; --sizes plots cost vs resolution"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see 'vitkit models')")
    p.add_argument("--against", action="append", choices=("timm", "torchvision"), default=[],
                   help="peer implementation timed in the same run (repeatable)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--iters", type=int, default=5, help="timed runs per implementation and precision")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    p.add_argument("--sizes", help="comma-separated square input sizes for the resolution-scaling plot")
    p.add_argument("--scaling-with", default="",
                   help="comma-separated other registered models for the same scaling plot; config overrides "
                        "after a colon, e.g. uniformer_small:windows=true")
    p.add_argument("--scaling-batch", type=int, default=1, help="batch size for --sizes (default 1)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile vitkit and every peer the same way (vitkit.models.compile.maybe_compile: "
                        "torch's automatic dynamic shapes) before timing; the warm-up run pays the compile time")
    p.add_argument("--dynamic", action="store_true",
                   help="with --compile: symbolic sizes from the first call (train.compile: dynamic)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"),
                   help="folder for <name>.json and <name>_scaling.png (default benchmarks/results); an existing "
                        "file is kept and the new one gets a time-stamped name")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files of the same name")


def _parse_variant(text: str) -> tuple[str, dict]:
    """'NAME' or 'NAME:key=value:key=value' (values parsed as YAML scalars) -> (name, overrides)."""
    import yaml

    name, *pairs = text.split(":")
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"expected key=value after ':' in {text!r}, got {pair!r}")
        k, v = pair.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v)
    return name, overrides


def run(args: argparse.Namespace) -> int:
    import torch

    from vitkit.analysis import benchmark as B
    from vitkit.analysis.plots import loglog_slope, plot_resolution_scaling

    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = sorted(set(dtypes) - {"fp32", "bf16"})
    if bad:
        raise ValueError(f"--dtypes takes fp32 and/or bf16, got {bad}")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else []
    for lib in args.against:  # a peer library that is not installed stops here, before any timing
        importlib.import_module(lib)
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    print(B.describe_load(B.machine_load()))
    peaks = {d: B.matmul_peak(kinds[d]) for d in dtypes}
    rows, notes = B.compare(args.name, args.against, args.batch, dtypes, args.iters, peaks=peaks,
                            compile="dynamic" if args.compile and args.dynamic else args.compile)
    after = {d: B.matmul_peak(kinds[d]) for d in dtypes}  # the best of before and after: load may have dropped
    peaks = {d: max(peaks[d], after[d]) for d in dtypes}
    for r in rows:
        r.frac_peak = 2 * r.macs_per_item * r.items_per_s / peaks[r.dtype]
    print("matmul peak here: " + ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    print(B.format_table(rows))
    print(B.describe_load(B.machine_load()))
    B.check_peak_fractions(rows)
    os.makedirs(args.out, exist_ok=True)
    for r in rows:
        print(f"  {r.impl:<28}{r.dtype:<6} peak forward memory {r.extra['peak_mem_mb']:.1f} MB")
    for label, note in notes.items():
        print(f"  {label}: {note}")
    extra = {"notes": notes}
    if sizes:
        others = [n.strip() for n in args.scaling_with.split(",") if n.strip()]
        series, exps_all = {}, {}
        for n in [args.name, *others]:
            model_name, overrides = _parse_variant(n)
            sc = B.resolution_scaling(model_name, sizes, batch=args.scaling_batch, dtype=dtypes[0], **overrides)
            series[n] = sc
            for skip in sc["skipped"]:
                print(f"  {n}: skipped size {skip}")
            if len(sc["pixels"]) >= 2:
                exps_all[n] = {m: loglog_slope(sc["pixels"], sc[m]) for m in ("ms", "gmacs", "attn_gmacs", "mem_mb")}
            print(f"{n}\n{'size':>6}{'ms/item':>10}{'GMACs':>9}{'attn GMACs':>12}{'mem MB':>9}")
            for i, s in enumerate(sc["size"]):
                print(f"{s:>6}{sc['ms'][i]:>10.1f}{sc['gmacs'][i]:>9.2f}{sc['attn_gmacs'][i]:>12.3f}"
                      f"{sc['mem_mb'][i]:>9.1f}")
            if n in exps_all:
                print("  cost ~ pixels^k: " + ", ".join(f"{m} k={v:.2f}" for m, v in exps_all[n].items()))
        extra["scaling"] = series
        extra["scaling_exponents"] = exps_all
        if exps_all:
            png = plot_resolution_scaling(B.free_path(os.path.join(args.out, f"{args.name}_scaling.png"),
                                                      args.overwrite),
                                          {n: sc for n, sc in series.items() if n in exps_all},
                                          title=f"cost against input pixels ({dtypes[0]}, batch {args.scaling_batch})")
            print(f"wrote {png}")
    path = B.free_path(os.path.join(args.out, f"{args.name}.json"), args.overwrite)
    B.write_json(path, rows, peaks, **extra)
    print(f"wrote {path}")
    return 0
