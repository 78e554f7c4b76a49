"""Keep freed CPU memory inside the process across training steps (glibc malloc settings).

A training step allocates and frees the same large tensors every step. glibc's malloc serves a large request
(above its mmap threshold: 128 KiB at start, raised up to 32 MiB as large blocks are freed) with fresh pages
from the kernel, and gives free heap memory above its trim threshold back to the kernel. Each step then pays a
page fault, and the kernel's zero-fill, for every 4 KiB page of every large tensor: Video Swin-T at one 16x224
clip in fp32 took 540k faults and 1.24 s of kernel time in a 6.9 s step on a Sapphire Rapids core
(``benchmarks/bench_allocator.py`` measures it per model).

:func:`reuse_freed_memory` makes malloc keep what is freed: no mmap for any request (``M_MMAP_MAX = 0``: the
heap serves them all, and glibc still falls back to mmap where the heap cannot grow), no trimming, and 64 MiB
of headroom per heap growth. The cost is that the process holds on to its peak memory (resident memory does not
shrink after the largest step) plus heap fragmentation (Video Swin-T: 3.19 vs 2.91 GB maximum resident). Data
loader workers forked inside the block inherit the setting and hold their own peaks alike.

This is what preloading jemalloc or tcmalloc does (PyTorch's CPU launcher ``torch.backends.xeon.run_cpu``);
where one of them is preloaded (``LD_PRELOAD``), or malloc is not glibc's, nothing is changed. ``vitkit train``
on the CPU applies it for the run (``train.reuse_freed_memory``, on by default) and restores glibc's defaults
after (giving the kept memory back). It changes no values, only where memory comes from.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from typing import Iterator

# mallopt parameters (malloc.h) and glibc's documented defaults (man 3 mallopt)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 << 10, _M_TOP_PAD: 128 << 10, _M_MMAP_MAX: 65536}
_REUSE = {_M_TRIM_THRESHOLD: (1 << 31) - 1, _M_TOP_PAD: 64 << 20, _M_MMAP_MAX: 0}
_state = {"depth": 0}


def _mallopt():
    """glibc's ``mallopt``, or None where malloc is not glibc's or another allocator is preloaded."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return None
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def _apply(values: dict[int, int]) -> bool:
    fn = _mallopt()
    return fn is not None and all(fn(param, value) == 1 for param, value in values.items())


def _give_back() -> None:
    """Return the heap's free pages to the kernel (glibc's ``malloc_trim(0)``)."""
    ctypes.CDLL(None).malloc_trim(0)


def supported() -> bool:
    """Whether :func:`reuse_freed_memory` changes anything here (Linux, glibc malloc, no preloaded allocator)."""
    return _mallopt() is not None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, malloc keeps freed memory for the next request (module doc); yields whether it does.

    Nested blocks keep it on until the outermost one ends; then glibc's defaults come back and the heap's free
    pages go back to the kernel.
    """
    if not enabled or not supported():
        yield False
        return
    if _state["depth"] == 0:
        _apply(_REUSE)
    _state["depth"] += 1
    try:
        yield True
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _apply(_DEFAULTS)
            _give_back()
