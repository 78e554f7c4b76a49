"""Training step (forward + backward + AdamW) of vitkit beside timm and torchvision, in one process.

Image families at batch ``--batch`` (default 8) and 224 against timm, video families at one 16x224 clip against
torchvision; fp32 and bf16 autocast; eager, plus compiled (every implementation through the same
``torch.compile``) with ``--compile``. Implementations are timed round-robin (one step of each per round), the
median with min / max over the rounds is reported, with the first step (the compile time when compiled), peak
training memory (op-level live storages on the CPU, ``max_memory_allocated`` on CUDA) and the load average
before and after. Writes benchmarks/results/train.json (a time-stamped name when it exists, unless --overwrite).

Usage: python benchmarks/bench_train.py [--models vit_small_patch16_224,swin3d_tiny] [--rounds 5] [--batch 8]
       [--dtypes fp32,bf16] [--compile] [--threads 2]
"""
from __future__ import annotations

import argparse
import os

import torch

import vitkit
from vitkit.analysis import benchmark as B

#: vitkit name -> (peer library, peer's name, input shape of one item)
SUITE = {
    "vit_small_patch16_224": ("timm", "vit_small_patch16_224", (3, 224, 224)),
    "vit_base_patch16_224": ("timm", "vit_base_patch16_224", (3, 224, 224)),
    "swin_tiny_patch4_window7_224": ("timm", "swin_tiny_patch4_window7_224", (3, 224, 224)),
    "mvitv2_tiny": ("timm", "mvitv2_tiny", (3, 224, 224)),
    "swin3d_tiny": ("torchvision", "video.swin3d_t", (3, 16, 224, 224)),
    "mvit_base_16x4": ("torchvision", "video.mvit_v1_b", (3, 16, 224, 224)),
}


def run_model(name: str, batch: int, dtypes: list[str], rounds: int, compile: bool, peaks: dict) -> list[B.BenchRow]:
    from vitkit.models.compile import maybe_compile

    lib, peer_name, shape = SUITE[name]
    torch.manual_seed(0)
    models = {"vitkit": vitkit.create_model(name), lib: B.build_peer(lib, peer_name)}
    try:  # same weights where a converter exists, so the work is identical
        vitkit.load_checkpoint(models["vitkit"], models[lib].state_dict())
    except Exception as e:  # noqa: BLE001 - a peer layout without converter still runs on its own weights
        print(f"  {name}: {lib} weights not convertible ({type(e).__name__}); each on its own random weights")
    x = torch.randn(1 if len(shape) == 4 else batch, *shape)
    macs = vitkit.profile(name, shape).macs
    rows = []
    for comp in ([False, True] if compile else [False]):
        timed = {k: maybe_compile(m, comp) for k, m in models.items()}
        got = B.measure_train_interleaved(timed, name, x, macs, peaks, dtypes, rounds=rounds, compiled=comp,
                                          eager=models)
        for r in got:
            r.impl = r.impl + (" compiled" if comp else "")
        B.add_ratios([r for r in got], ours="vitkit" + (" compiled" if comp else ""))
        rows += got
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SUITE), help=f"comma-separated, from: {', '.join(SUITE)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="image batch (video: one clip)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--compile", action="store_true", help="also time every implementation compiled")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train.json"))
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in SUITE]
    if bad:
        ap.error(f"unknown --models {bad}; choose from {', '.join(SUITE)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if set(dtypes) - {"fp32", "bf16"}:
        ap.error(f"--dtypes takes fp32 and/or bf16, got {dtypes}")
    torch.set_num_threads(args.threads)
    before = B.machine_load()
    print(B.describe_load(before))
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: B.matmul_peak(kinds[d]) for d in dtypes}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    rows = []
    for n in names:
        rows += run_model(n, args.batch, dtypes, args.rounds, args.compile, peaks)
    after = B.machine_load()
    print(B.format_table(rows, unit="items/s"))
    for r in rows:
        print(f"  {r.impl:<22}{r.model:<30}{r.dtype:<6} first step {r.extra['first_step_s']:.1f} s, "
              f"peak training memory {r.extra['peak_train_mem_mb']:.0f} MB")
    print(B.describe_load(after))
    path = B.free_path(args.out, args.overwrite)
    B.write_json(path, rows, peaks, benchmark="training step (forward + backward + AdamW)",
                 load_before=before, load_after=after)
    print("wrote", path)


if __name__ == "__main__":
    main()
