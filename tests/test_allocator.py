"""vitkit.engine.allocator: malloc keeps freed memory inside ``reuse_freed_memory`` and gives it back after.

Counted in page faults and resident memory (the kernel's own counts for this process), not time.
"""
from __future__ import annotations

import resource

import pytest
import torch

from vitkit.engine import allocator
from vitkit.engine.allocator import reuse_freed_memory

pytestmark = pytest.mark.skipif(not allocator.supported(), reason="needs glibc malloc without a preloaded allocator")

def _faults(step, n: int) -> int:
    """Minor page faults (the kernel's count for this process) taken by ``n`` calls of ``step``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@pytest.fixture()
def step():
    """A training step's memory pattern at small cost: forward and backward of elementwise ops on a 64 MiB
    parameter (above glibc's largest mmap threshold, 32 MiB), so several 64 MiB tensors come and go."""
    w = torch.randn(1 << 24, requires_grad=True)
    return lambda: (w * 2).exp().sin().sum().backward()


def test_freed_memory_is_reused_inside_the_block_and_given_back_after(step):
    step()
    default = _faults(step, 4)
    assert default > 4 * 16384  # fresh pages from the kernel for every large tensor of every step
    with reuse_freed_memory() as active:
        assert active
        _faults(step, 3)  # the heap grows to the steps' peak
        assert _faults(step, 4) < default / 2  # glibc's heap is lumpy: mostly, not always, zero per step
        with reuse_freed_memory():  # nested: still on after the inner block
            pass
        assert _faults(step, 4) < default / 2
        kept = _resident_bytes()
    assert kept - _resident_bytes() > 64 << 20  # the kept memory goes back to the kernel when the block ends


def test_disabled_or_preloaded_allocator_changes_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_apply", lambda values: calls.append(values) or True)
    with reuse_freed_memory(enabled=False) as active:
        assert not active
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert not allocator.supported()
    with reuse_freed_memory() as active:
        assert not active
    assert calls == []
    monkeypatch.delenv("LD_PRELOAD")
    with reuse_freed_memory() as active:  # the same stub sees the settings go in and come back out
        assert active
    assert calls == [allocator._REUSE, allocator._DEFAULTS]
