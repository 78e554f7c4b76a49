"""Training step (forward + backward + AdamW) of vitkit beside timm and torchvision, in one process.

Image families at batch ``--batch`` (default 8) and 224 against timm, video families at one 16x224 clip against
torchvision, each model with the drop-path rate its paper trains with (``TRAIN_DROP_PATH``, both sides); fp32 and
bf16 autocast; eager, plus compiled (every implementation through the same
``torch.compile``: :func:`vitkit.models.compile.maybe_compile`, torch's automatic dynamic shapes, or symbolic
sizes from the start with ``--dynamic``; each compile starts from empty Inductor caches, but a peer class
compiled earlier in the same run, e.g. timm Swin-T for Swin-T and then as UniFormer-S's stand-in, reuses
TorchDynamo's graph and shows no compile time the second time) with ``--compile``.
Implementations are timed round-robin (one step of each per round), the median with min / max over the rounds
is reported, with the first step (the compile time when compiled; the C++ compiler's CPU time beside it), peak
training memory (allocated bytes above the level before the step: the CPU allocator's profiler events, for compiled
models too, ``max_memory_allocated`` on CUDA) and the load average
before and after. Writes benchmarks/results/train.json (a time-stamped name when it exists, unless --overwrite),
after every model (``"complete": false`` and ``models_done`` until the last one), so a run stopped part-way keeps
what it measured.

Usage: python benchmarks/bench_train.py [--models vit_small_patch16_224,swin3d_tiny] [--rounds 5] [--batch 8]
       [--dtypes fp32,bf16] [--compile [--dynamic]] [--threads 2] [--profile] [--clip 8,128] [--allocator reuse]

--clip T,S runs the video families at T frames of S x S (both libraries' models built for that clip) instead of
16x224 (UniFormer needs S divisible by 32).

--allocator reuse runs everything with malloc keeping freed memory, as ``vitkit train`` does on the CPU
(:mod:`vitkit.engine.allocator`; the default, glibc, is what a plain training loop gets); it is process-wide, so
the peers run under it too. ``bench_allocator.py`` measures what it saves.

--profile adds, per model and dtype, the per-op profile of one step of each implementation (interleaved, fastest
of 3 runs per op) and the share of the dense kernels (matrix products, attention, convolutions): with those
running equally fast in both, total / dense bounds the ratio any implementation can reach (Amdahl's law); and
the minor page faults each op took in one step (fresh pages for new tensors above malloc's mmap threshold).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.engine.allocator import reuse_freed_memory
from vitkit.engine.optim import build_optimizer
from vitkit.analysis.step_profile import (count_step_faults, dense_split, format_fault_tables,
                                          format_op_tables, profile_train_steps)

#: vitkit name -> (peer library, peer's name, input shape of one item)
SUITE = {
    "vit_small_patch16_224": ("timm", "vit_small_patch16_224", (3, 224, 224)),
    "vit_base_patch16_224": ("timm", "vit_base_patch16_224", (3, 224, 224)),
    "swin_tiny_patch4_window7_224": ("timm", "swin_tiny_patch4_window7_224", (3, 224, 224)),
    "mvitv2_tiny": ("timm", "mvitv2_tiny", (3, 224, 224)),
    "swin3d_tiny": ("torchvision", "video.swin3d_t", (3, 16, 224, 224)),
    "mvit_base_16x4": ("torchvision", "video.mvit_v1_b", (3, 16, 224, 224)),
    # different models: the issue's goal is UniFormer-S's throughput over these peers' (no weight conversion)
    "uniformer_small": ("timm", "swin_tiny_patch4_window7_224", (3, 224, 224)),
    "uniformer_small_16x4": ("torchvision", "video.mvit_v1_b", (3, 16, 224, 224)),
}


#: stochastic depth as each architecture's paper trains it on ImageNet-1k / Kinetics-400 (DeiT 0.1, Swin-T 0.2,
#: MViTv2-T 0.1, Video Swin-T 0.1, MViT-B 16x4 0.2, UniFormer-S 0.1 image and video; paper-facts), by the vitkit
#: name of the architecture; both sides of a pair train at their architecture's rate, so each does the drop-path
#: work a user's training run does (timm's and torchvision's builders default to other rates, 0 to 0.2)
TRAIN_DROP_PATH = {
    "vit_small_patch16_224": 0.1, "vit_base_patch16_224": 0.1, "swin_tiny_patch4_window7_224": 0.2,
    "mvitv2_tiny": 0.1, "swin3d_tiny": 0.1, "mvit_base_16x4": 0.2, "uniformer_small": 0.1,
    "uniformer_small_16x4": 0.1,
}
#: a peer's name -> the vitkit name of the architecture it implements (its rate in TRAIN_DROP_PATH)
PEER_ARCHITECTURE = {"video.swin3d_t": "swin3d_tiny", "video.mvit_v1_b": "mvit_base_16x4"}
#: peers whose builder fixes the rate (torchvision's ``swin3d_t``: 0.1, the paper's) and takes no keyword for it
PEER_FIXED_RATE = {"video.swin3d_t": 0.1}


def drop_path_kwargs(lib: str, peer_name: str) -> dict:
    """The peer builder's keyword for its architecture's training drop-path rate (:data:`TRAIN_DROP_PATH`)."""
    rate = TRAIN_DROP_PATH[PEER_ARCHITECTURE.get(peer_name, peer_name)]
    if peer_name in PEER_FIXED_RATE:
        if PEER_FIXED_RATE[peer_name] != rate:
            raise ValueError(f"{peer_name}'s builder fixes drop path at {PEER_FIXED_RATE[peer_name]}, not {rate}")
        return {}
    return {"drop_path_rate": rate} if lib == "timm" else {"stochastic_depth_prob": rate}


def _mvit_v1_b_at(frames: int, side: int, **kwargs) -> torch.nn.Module:
    """torchvision's ``mvit_v1_b`` with its position embedding sized for another clip (the builder fixes 16x224
    and passes it on to ``_mvit``; nothing else in the model depends on the clip size)."""
    import torchvision.models.video.mvit as tvm

    build = tvm._mvit

    def at_clip(**kw):
        return build(**{**kw, "spatial_size": (side, side), "temporal_size": frames})

    tvm._mvit = at_clip
    try:
        return tvm.mvit_v1_b(weights=None, **kwargs)
    finally:
        tvm._mvit = build


#: video peers that must be built for a clip other than 16x224 (--clip); torchvision's swin3d_t adapts by itself
PEER_AT_CLIP = {"video.mvit_v1_b": _mvit_v1_b_at}


def own_optimizer(impl: str, model: torch.nn.Module, lr: float = 1e-4, wd: float = 0.05) -> torch.optim.Optimizer:
    """Each library's training optimiser as its users get it: vitkit's engine (fused AdamW, no decay on norms
    and biases), timm's ``create_optimizer_v2`` (its train.py), torchvision's reference scripts (plain AdamW)."""
    if impl.startswith("vitkit"):
        return build_optimizer(model, lr, wd)
    if impl.startswith("timm"):
        from timm.optim import create_optimizer_v2

        return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=wd)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)


def clip_input(shape: tuple[int, ...], clip: tuple[int, int] | None) -> tuple[tuple[int, ...], dict]:
    """(input shape, vitkit model kwargs) of a suite entry: a video family at ``clip`` (frames, side) instead of
    16x224 gets the shape and a model built for it; images and ``clip=None`` are as they are."""
    if not clip or len(shape) != 4:
        return shape, {}
    return (shape[0], clip[0], clip[1], clip[1]), {"num_frames": clip[0], "img_size": clip[1]}


def parse_clip(ap: argparse.ArgumentParser, text: str | None) -> tuple[int, int] | None:
    """``--clip T,S`` as (frames, side), or None without it; a clear error otherwise."""
    if not text:
        return None
    try:
        t, side = (int(v) for v in text.split(","))
    except ValueError:
        ap.error(f"--clip takes frames,side (e.g. 8,112), got {text!r}")
    return t, side


def run_model(name: str, batch: int, dtypes: list[str], rounds: int, compile: bool | str, peaks: dict,
              profiles: dict | None = None, clock: str = "wall", optimizer: str = "own",
              checkpointing: bool = False, clip: tuple[int, int] | None = None) -> list[B.BenchRow]:
    from vitkit.models.compile import maybe_compile

    lib, peer_name, shape = SUITE[name]
    shape, own_kw = clip_input(shape, clip)
    at_clip = bool(own_kw)  # a video family at another clip: both models built for it
    torch.manual_seed(0)
    own = vitkit.create_model(name, **own_kw, drop_path_rate=TRAIN_DROP_PATH[name])
    peer_kw = drop_path_kwargs(lib, peer_name)
    peer = (PEER_AT_CLIP[peer_name](*clip, **peer_kw) if at_clip and peer_name in PEER_AT_CLIP
            else B.build_peer(lib, peer_name, **peer_kw))
    models = {"vitkit": own, lib: peer}
    try:  # same weights where a converter exists, so the work is identical
        vitkit.load_checkpoint(models["vitkit"], models[lib].state_dict())
    except Exception as e:  # noqa: BLE001 - a peer layout without converter still runs on its own weights
        print(f"  {name}: {lib} weights not convertible ({type(e).__name__}); each on its own random weights")
    if checkpointing:  # activation checkpointing: every block, and the first stage's blocks only
        models["vitkit ckpt all"] = copy.deepcopy(models["vitkit"]).set_grad_checkpointing(True)
        if len(models["vitkit"].stage_blocks()) > 1:
            models["vitkit ckpt [0]"] = copy.deepcopy(models["vitkit"]).set_grad_checkpointing(True, stages=[0])
    make_opt = own_optimizer if optimizer == "own" else None
    x = torch.randn(1 if len(shape) == 4 else batch, *shape)
    macs = vitkit.profile(name, shape, **own_kw).macs
    rows = []
    for comp in ([False, compile] if compile else [False]):
        timed = {k: maybe_compile(m, comp) for k, m in models.items()}
        got = B.measure_train_interleaved(timed, name, x, macs, peaks, dtypes, rounds=rounds, compiled=comp,
                                          clock=clock, make_optimizer=make_opt)
        for r in got:
            r.impl = r.impl + (" compiled" if comp else "")
        B.add_ratios([r for r in got], ours="vitkit" + (" compiled" if comp else ""))
        rows += got
    if profiles is not None:
        kinds = {"fp32": None, "bf16": torch.bfloat16}
        for d in dtypes:
            tables = profile_train_steps(models, x, kinds[d], make_optimizer=make_opt)
            print(f"\n{name} {d}: one training step per op (fastest of 3 interleaved runs)")
            print(format_op_tables(tables))
            faults = count_step_faults(models, x, kinds[d], make_optimizer=make_opt)
            print(f"\n{name} {d}: minor page faults per op, one training step")
            print(format_fault_tables(faults))
            profiles.setdefault(name, {})[d] = {
                impl: {"total_ms": dense_split(t)[1], "dense_ms": dense_split(t)[0],
                       "ops": {op: v for op, v in sorted(t.ops.items(), key=lambda kv: -kv[1][0])[:25]},
                       "page_faults": sum(f for f, _ in faults[impl].values()),
                       "page_faults_by_op": dict(sorted(faults[impl].items(), key=lambda kv: -kv[1][0])[:15])}
                for impl, t in tables.items()}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SUITE), help=f"comma-separated, from: {', '.join(SUITE)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="image batch (video: one clip)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--compile", action="store_true", help="also time every implementation compiled")
    ap.add_argument("--dynamic", action="store_true",
                    help="with --compile: symbolic sizes from the first call (train.compile: dynamic) instead of "
                         "torch's automatic dynamic shapes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also print per-op profiles and the Amdahl bound")
    ap.add_argument("--clock", choices=sorted(B.CLOCKS), default="wall",
                    help="wall-clock, or process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--optimizer", choices=("own", "same"), default="own",
                    help="own: each library's training optimiser (vitkit's fused AdamW, timm's create_optimizer_v2, "
                         "plain AdamW for torchvision); same: torch's default AdamW for all (the models alone)")
    ap.add_argument("--checkpointing", action="store_true",
                    help="also time vitkit with activation checkpointing (all blocks; first stage only)")
    ap.add_argument("--clip", default=None, help="video families at T,S (frames, side) instead of 16,224")
    ap.add_argument("--allocator", choices=("glibc", "reuse"), default="glibc",
                    help="glibc: malloc's defaults; reuse: malloc keeps freed memory, as vitkit train does on the "
                         "CPU (vitkit.engine.allocator; process-wide, so every implementation runs under it)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train.json"))
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    command = " ".join(["benchmarks/bench_train.py", *(sys.argv[1:] if argv is None else argv)])
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in SUITE]
    if bad:
        ap.error(f"unknown --models {bad}; choose from {', '.join(SUITE)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if set(dtypes) - {"fp32", "bf16"}:
        ap.error(f"--dtypes takes fp32 and/or bf16, got {dtypes}")
    clip = parse_clip(ap, args.clip)
    compile_mode = "dynamic" if args.compile and args.dynamic else args.compile
    torch.set_num_threads(args.threads)
    before = B.machine_load()
    print(B.describe_load(before))
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {d: B.matmul_peak(kinds[d], clock=args.clock) for d in dtypes}
    print("matmul peak here:", ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    rows = []
    profiles: dict | None = {} if args.profile else None
    path = B.free_path(args.out, args.overwrite)
    done: list[str] = []
    load_per_model: dict[str, dict] = {}

    def save(complete: bool) -> None:  # after every model: a run stopped part-way keeps what it measured
        B.write_json(path, rows, peaks, benchmark="training step (forward + backward + AdamW)", command=command,
                     load_before=before, load_after=B.machine_load(), load_after_model=load_per_model,
                     threads=args.threads, batch=args.batch, clock=args.clock, optimizer=args.optimizer,
                     compile=compile_mode, video_clip=list(clip) if clip else [16, 224], models_done=list(done),
                     allocator=args.allocator,
                     complete=complete, **({"profiles": profiles} if profiles else {}))

    with reuse_freed_memory(args.allocator == "reuse"):
        for n in names:
            rows += run_model(n, args.batch, dtypes, args.rounds, compile_mode, peaks, profiles, args.clock,
                              args.optimizer, args.checkpointing, clip)
            done.append(n)
            load_per_model[n] = B.machine_load()
            save(complete=len(done) == len(names))
            print(f"wrote {path} ({len(done)}/{len(names)} models)", flush=True)
    after = B.machine_load()
    print(B.format_table(rows, unit="items/s"))
    for r in rows:
        print(f"  {r.impl:<22}{r.model:<30}{r.dtype:<6} first step {r.extra['first_step_s']:.1f} s "
              f"({args.clock}; + {r.extra.get('first_step_children_cpu_s', 0.0):.1f} s CPU in child processes; "
              f"{r.extra['first_step_wall_s']:.1f} s wall), "
              f"peak training memory {r.extra['peak_train_mem_mb']:.0f} MB")
    print(B.describe_load(after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
