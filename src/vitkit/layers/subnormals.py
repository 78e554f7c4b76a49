"""Subnormal floating-point numbers flushed to zero around one CPU kernel, on the calling thread only.

x86 cores take a slow microcode path for every operation that makes or reads a subnormal number (below
float32's smallest normal, 1.18e-38). A softmax over scores that carry Swin's -100 shift mask computes
``exp(-100)``-sized terms, float32 subnormals, in bf16 as in float32 (its arithmetic is float32): on a Sapphire
Rapids core a bf16 softmax over masked scores the size of Swin-T's first stage at batch 8 (3.7 M) took 16.9 ms
where unmasked it took 8.6. The processor's flush-to-zero and denormals-are-zero modes
(``torch.set_flush_denormal``, the MXCSR register) make those terms 0 at full speed: 7.6 ms, the bf16
probabilities bitwise plain softmax's except those below float32's smallest normal number, which are 0.

The mode is a per-thread register, so :func:`flush_subnormals` sets it for one kernel call and puts back what
was there: it never changes the numerics of anything else (an optimiser's second moments can be subnormal), and
it is used only where the whole kernel runs on the calling thread (:func:`flushes_whole_kernel`: one intra-op
thread; with more, ATen's worker threads keep their own registers and attention keeps its arithmetic floor).
:func:`subnormal_flushing` turns it off for a block (an A/B: ``benchmarks/bench_allocator.py --setting
subnormals``).
"""
from __future__ import annotations

import contextlib
import functools
import sys
from typing import ContextManager, Iterator

import torch

from .switch import Switch

# read at run time (never folded by the compiler): their product is subnormal, so 0.0 under flush-to-zero
_SMALLEST_NORMAL, _HALF = sys.float_info.min, 0.5
_FLUSH = Switch()


def subnormal_flushing(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, kernels may flush subnormals where :func:`flushes_whole_kernel` allows (``enabled``, the
    default everywhere) or never (attention's float32 floor then runs at every thread count); the previous state
    comes back after."""
    return _FLUSH.set(enabled)


def flushing() -> bool:
    """Whether the calling thread flushes subnormal results to zero now (a double product that would be one)."""
    return _SMALLEST_NORMAL * _HALF == 0.0


@contextlib.contextmanager
def flush_subnormals() -> Iterator[bool]:
    """Flush-to-zero and denormals-are-zero on the calling thread inside the block; yields whether they are on
    (False where the CPU cannot). A thread that already flushes is left as it is, before and after."""
    if flushing():
        yield True
        return
    on = torch.set_flush_denormal(True)
    try:
        yield on
    finally:
        if on:
            torch.set_flush_denormal(False)


@functools.lru_cache(maxsize=None)
def can_flush() -> bool:
    """Whether this CPU flushes subnormals on request (x86 with denormals-are-zero; ``torch.set_flush_denormal``
    says so); asked once, the asking thread left as it was."""
    with flush_subnormals() as on:
        return on


def flushes_whole_kernel(t: torch.Tensor) -> bool:
    """Whether a kernel over CPU tensor ``t`` runs entirely on the calling thread (one intra-op thread), so that
    :func:`flush_subnormals` covers all of it, on a CPU that can flush (:func:`can_flush`; elsewhere attention
    keeps its float32 floor), with flushing not turned off (:func:`subnormal_flushing`)."""
    return (_FLUSH.on and t.device.type == "cpu" and torch.get_num_threads() == 1 and can_flush())
