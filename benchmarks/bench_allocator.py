"""Training step with and without a process setting (where memory comes from, how subnormals are kept out),
one process, alternating.

``--setting allocator`` (the default): malloc keeping freed memory (``vitkit train``'s CPU default,
:func:`vitkit.engine.allocator.reuse_freed_memory`) against glibc's defaults. The setting is process-wide, so a
peer model in the same process gains the same: it is a property of the training loop, not of vitkit's models
(``bench_train.py`` runs every model with glibc's defaults).

``--setting huge_pages``: attention's large products on transparent huge pages
(:mod:`vitkit.layers.huge_pages`, on by default) against the same products on 4 KiB pages
(``huge_page_advice(False)``), both with glibc's defaults, as ``bench_train.py`` runs.

``--setting subnormals``: the masked softmax of Swin's shifted windows flushing subnormals to zero where one
thread runs it (:mod:`vitkit.layers.subnormals`, on by default) against the arithmetic floor in float32 and plain
softmax in bf16 (``subnormal_flushing(False)``, what runs with more than one thread). Only models with a shift
mask (Swin, Video Swin) differ; run it with ``--threads 1``.

``--setting dw_batch``: the float32 backward of UniFormer's depthwise convolutions in chunks of 2^22 input elements
(:func:`vitkit.layers.conv_blocks.large_backward_chunks`, on by default; a whole batch of 8 images) against chunks
of 2^18, as MViT's pooling keeps. Only UniFormer differs.

``--setting compiled_depthwise``: the model compiled (``maybe_compile``, as ``train.compile: true``), its depthwise
convolutions as vitkit's operators running eager's kernels (:func:`vitkit.layers.depthwise.compiled_depthwise_operators`,
on by default) against the plain ops Inductor compiles itself; TorchDynamo keeps one graph per side. UniFormer,
MViT (pooling) differ; in float32 only where eager has its own backward (UniFormer's 5x5 and clips, MViT's clips).

``--setting compiled_softmax``: the model compiled, the softmax over Swin's masked scores floored in fused ops
(:func:`vitkit.layers.attention.compiled_softmax_floor`, on by default) against plain softmax, whose exponentials
of masked scores are subnormal numbers. Only Swin and Video Swin in float32 differ (compiled bf16 keeps plain
softmax: the floor did not pay there, measured with both sides floored in bf16 before that choice).

``--setting compiled_materialize``: the model compiled, Swin's relative position bias and shift mask written out
once per step (:func:`vitkit.layers.materialize.compiled_materialize`, on by default) against Inductor recomputing
them inside the kernels that add them to the scores. Only Swin and Video Swin differ.

``--setting compiled_flush``: the model compiled, the softmax over Swin's masked bf16 scores as
``vitkit::masked_softmax`` (eager's kernel with the processor flushing subnormals, one thread;
:func:`vitkit.layers.attention.compiled_softmax_flush`, on by default) against Inductor's plain softmax. Only Swin
and Video Swin in bf16 differ; run it with ``--threads 1``.

``--setting fp32_onednn``: narrow float32 training linears' forward through oneDNN, the bias in the GEMM
(:func:`vitkit.layers.fused.trains_in_fp32`, on by default) against ``F.linear``'s ``addmm`` (the weight
gradient's orientation, :func:`vitkit.layers.fused.weight_grad`, is the same on both sides only where the layer
takes the oneDNN path; ``addmm``'s autograd picks its own). Only fp32 differs.

``--setting pointwise2d``: UniFormer's 2-D 1x1 convolutions as the training linear over a channels-last map's
channels in float32 CPU training (:class:`vitkit.layers.conv_blocks.PointwiseConv2d`, on by default) against
oneDNN's convolution. Only UniFormer (image) in float32 differs.

``--setting rebuild``: attention's input (the normalised tokens; Swin's in windows) normalised again in the
backward instead of kept (:func:`vitkit.layers.rebuild.normed`, on by default); the peak columns show what it
saves. ViT, Swin, Video Swin and MViT (float32) differ; UniFormer does not.

``--setting dense_heads``: q, k and v as dense tensors, q scaled, with a one-pass backward into the qkv projection's
layout (:func:`vitkit.layers.heads.scaled_heads`, on by default) against the official views and ``q * scale``.
Swin, Video Swin, and in bf16 ViT and UniFormer (where their attention runs explicitly) differ; MViT does not.

``--clip T,S`` builds the video families for T frames of S x S instead of 16x224 (as ``bench_train.py --clip``),
e.g. to fit a compiled setting's compile time.

Same model, same batch; each round times one step without the setting and one with it (after one untimed step
with it, as a run's steady state), in alternating order. Prints per model and precision the median step time of
each, the ratio with its spread over the rounds, the page faults and kernel CPU time per timed step, and each
side's peak memory in one more step (allocated above the level before it, the optimiser's state already made); writes
the JSON to benchmarks/results/<setting>.json (a time-stamped name when it exists, unless --overwrite).

Usage: python benchmarks/bench_allocator.py [--setting allocator|huge_pages|subnormals|dw_batch|compiled_depthwise|compiled_softmax|
       compiled_materialize|compiled_flush|fp32_onednn|pointwise2d|rebuild|dense_heads]
       [--models swin3d_tiny,swin_tiny_patch4_window7_224] [--dtypes fp32,bf16] [--rounds 3] [--threads 1]
       [--clock cpu] [--clip 8,128]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys

import torch

import vitkit
from vitkit.analysis import benchmark as B
from vitkit.engine.allocator import reuse_freed_memory, supported
from vitkit.engine.optim import build_optimizer
from vitkit.layers import conv_blocks, depthwise, fused, heads, huge_pages, rebuild, subnormals
from vitkit.layers.attention import compiled_softmax_floor, compiled_softmax_flush
from vitkit.layers.materialize import compiled_materialize
from vitkit.models.compile import maybe_compile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import SUITE, clip_input, parse_clip  # noqa: E402 - the training benchmark's models and inputs

KINDS = {"fp32": None, "bf16": torch.bfloat16}
#: per setting: the context that turns it on (``True``) or leaves it off, and the labels of its two sides
SETTINGS = {
    "allocator": (reuse_freed_memory, ("default", "reuse")),
    "huge_pages": (huge_pages.huge_page_advice, ("default", "advised")),
    "subnormals": (subnormals.subnormal_flushing, ("floor", "flushed")),
    "dw_batch": (conv_blocks.large_backward_chunks, ("small chunks", "large chunks")),
    "compiled_depthwise": (depthwise.compiled_depthwise_operators, ("traced", "operators")),
    "compiled_softmax": (compiled_softmax_floor, ("plain", "floored")),
    "compiled_materialize": (compiled_materialize, ("inlined", "materialized")),
    "compiled_flush": (compiled_softmax_flush, ("plain", "flushed")),
    "fp32_onednn": (fused.fp32_training_onednn, ("addmm", "onednn")),
    "pointwise2d": (conv_blocks.pointwise_products, ("conv", "product")),
    "rebuild": (rebuild.rebuild_saved_inputs, ("kept", "rebuilt")),
    "dense_heads": (heads.dense_heads, ("views", "dense")),
}
#: settings that act on a compiled model
COMPILED = {"compiled_depthwise", "compiled_softmax", "compiled_materialize", "compiled_flush"}


def timed_step(step, clock) -> tuple[float, int, float]:
    """(seconds by ``clock``, minor page faults, kernel CPU seconds) of one ``step()``."""
    r0, t = resource.getrusage(resource.RUSAGE_SELF), clock()
    step()
    seconds, r1 = clock() - t, resource.getrusage(resource.RUSAGE_SELF)
    return seconds, r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime


def run(name: str, dtypes: list[str], rounds: int, batch: int, clock, setting: str = "allocator",
        clip: tuple[int, int] | None = None) -> list[dict]:
    shape, own_kw = clip_input(SUITE[name][2], clip)
    torch.manual_seed(0)
    model = vitkit.create_model(name, **own_kw).train()
    opt = build_optimizer(model, 1e-4, 0.05)
    x = torch.randn(1 if len(shape) == 4 else batch, *shape)
    target = torch.zeros(x.shape[0], dtype=torch.long)
    rows = []
    context, labels = SETTINGS[setting]
    stepped = maybe_compile(model) if setting in COMPILED else model
    for d in dtypes:
        step = lambda: B.train_step(stepped, x, target, opt, KINDS[d])  # noqa: E731
        step()
        if setting in COMPILED:
            with context(False):
                step()  # the other side's graph compiles here, not in a timed step
        got: dict[bool, list[tuple[float, int, float]]] = {False: [], True: []}
        for i in range(rounds):
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                with context(on):
                    if on:
                        step()  # e.g. the heap grows to the step's peak: a run's steady state from here on
                    got[on].append(timed_step(step, clock))
        peaks = {}
        for on in (False, True):
            with context(on), B.AllocatedPeak() as counter:
                step()
            peaks[on] = counter.peak / 2**20
        ratios = sorted(a[0] / b[0] for a, b in zip(got[False], got[True]))
        row = {"model": name, "dtype": d, "batch": x.shape[0], "input": list(x.shape[1:]), "rounds": rounds,
               "ratio": statistics.median(ratios),
               "ratio_min": ratios[0], "ratio_max": ratios[-1], "setting": setting, "labels": list(labels)}
        for reuse, label in zip((False, True), labels):
            ms = [g[0] * 1e3 for g in got[reuse]]
            row[label] = {"median_ms": statistics.median(ms), "round_ms": ms,
                          "faults_per_step": statistics.median(g[1] for g in got[reuse]),
                          "kernel_s_per_step": statistics.median(g[2] for g in got[reuse]),
                          "peak_mb": peaks[reuse]}
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    d, u = (r[label] for label in r["labels"])
    return (f"{r['model']:<30}{r['dtype']:<6}{d['median_ms']:>10.0f}{u['median_ms']:>10.0f}"
            f"{r['ratio']:>8.2f}x [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
            f"{d['faults_per_step']:>12.0f}{u['faults_per_step']:>9.0f}{d['kernel_s_per_step']:>9.2f}"
            f"{u['kernel_s_per_step']:>8.2f}{d['peak_mb']:>10.1f}{u['peak_mb']:>9.1f}")


def header(on: str) -> str:
    """The table's header, ``on`` naming the side with the setting."""
    short = on.split()[0][:6]  # a word that fits its column ("large chunks" -> "large")
    return (f"{'model':<30}{'dtype':<6}{'off ms':>10}{short + ' ms':>10}{'ratio':>9} {'[per round]':<12}"
            f"{'faults':>11}{short:>9}{'sys s':>9}{short:>8}{'peak MiB':>10}{short:>9}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=list(SETTINGS), default="allocator")
    p.add_argument("--models", default="swin3d_tiny,swin_tiny_patch4_window7_224,uniformer_small_16x4")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="image batch (video: one clip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=list(B.CLOCKS), default="cpu")
    p.add_argument("--clip", default=None, help="video families at T,S (frames, side) instead of 16,224")
    p.add_argument("--out", help="default: benchmarks/results/<setting>.json")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if not supported():
        print("malloc here is not glibc's (or another allocator is preloaded): nothing to compare")
        return 1
    if args.setting == "huge_pages" and not huge_pages.supported():
        print("transparent huge pages are not given on request here (madvise mode): nothing to compare")
        return 1
    clip = parse_clip(p, args.clip)
    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SUITE]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {', '.join(SUITE)}")
    load_before = B.machine_load()
    print(B.describe_load(load_before))
    head = header(SETTINGS[args.setting][1][1])
    print(head)
    print("-" * len(head))
    rows = []
    for name in models:
        rows += run(name, args.dtypes.split(","), args.rounds, args.batch, B.CLOCKS[args.clock], args.setting, clip)
    load_after = B.machine_load()
    print(B.describe_load(load_after))
    out = B.free_path(args.out or f"benchmarks/results/{args.setting}.json", args.overwrite)
    B.write_json(out, [], {}, allocator_rows=rows, load_before=load_before, load_after=load_after,
                 clock=args.clock, threads=args.threads,
                 max_resident_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
