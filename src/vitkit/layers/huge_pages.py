"""Attention's largest tensors on transparent huge pages (Linux, CPU).

With glibc's malloc defaults a large tensor is fresh memory from the kernel each time it is made (malloc maps
every request at or above its mmap threshold, and raises that threshold only to the size of a freed mapping
of at most 32 MiB: the next request of that size is mapped again), a page fault and a zero-fill for every 4 KiB
page on first touch. Attention's scores and their gradient are the largest tensors of a video model's training
step (Video Swin-T at one 16x224 clip, float32: 118, 59, 29 and 15 MB per block of stages 1-4, every one of
them fresh pages, about 1.1 GB per step). Asking the kernel to back such a tensor with 2 MiB pages
(``madvise(MADV_HUGEPAGE)`` before it is written, where transparent huge pages are given on request:
``/sys/kernel/mm/transparent_hugepage/enabled`` = ``madvise``) makes 512 times fewer faults: ``q k^T`` over 192
window-heads of 392 tokens, one Sapphire Rapids thread, took 72 ms into a new tensor, 44 ms into a new tensor so
advised and 31 ms into a reused one. PyTorch's ``THP_MEM_ALLOC_ENABLE`` does this for every allocation of the
process; this module does it only for the products :func:`batched_product` makes.

Where huge pages are always on (the kernel gives them unasked) or never, off Linux, and for tensors below
:data:`HUGE_PAGE_MIN_BYTES`, nothing is advised. Memory malloc serves from its heap (``vitkit train`` keeps freed
memory there, :mod:`vitkit.engine.allocator`) is already resident; advising it changes nothing there. It changes
where memory comes from, never a value.
"""
from __future__ import annotations

import ctypes
import functools
import platform
from typing import ContextManager, Sequence

import torch

from .fused import is_tracing
from .switch import Switch

#: the kernel's huge page (x86-64, arm64 with 4 KiB base pages)
HUGE_PAGE_BYTES = 2 << 20
#: tensors at least this large are advised (two huge pages: at least one whole one lies inside)
HUGE_PAGE_MIN_BYTES = 4 << 20
_MADV_HUGEPAGE = 14
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
_ADVISE = Switch()


def huge_page_advice(enabled: bool = True) -> ContextManager[None]:
    """Inside the block, large products are advised for huge pages (``enabled``, the default everywhere) or not
    (for A/B measurements, ``benchmarks/bench_allocator.py --setting huge_pages``, or where the kernel's
    compaction for huge pages stalls); the previous state comes back after."""
    return _ADVISE.set(enabled)


@functools.lru_cache(maxsize=None)
def _madvise():
    """libc's ``madvise``, where transparent huge pages are given on request (mode ``madvise``); else None."""
    if platform.system() != "Linux":
        return None
    try:
        with open(_THP_MODE, encoding="ascii") as f:
            if "[madvise]" not in f.read():
                return None
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


def supported() -> bool:
    """Whether large products are advised here at all (Linux, transparent huge pages given on request)."""
    return _madvise() is not None


def advise_huge_pages(t: torch.Tensor) -> bool:
    """Ask the kernel to back the whole 2 MiB pages inside ``t``'s memory with huge pages; call it before the
    memory is first written. True when advised (a large CPU tensor, Linux with ``madvise`` mode)."""
    nbytes = t.untyped_storage().nbytes()
    fn = _madvise() if _ADVISE.on and t.device.type == "cpu" and nbytes >= HUGE_PAGE_MIN_BYTES else None
    if fn is None:
        return False
    start = -(-t.data_ptr() // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    end = (t.data_ptr() + nbytes) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
    return end > start and fn(start, end - start, _MADV_HUGEPAGE) == 0


def _product(a: torch.Tensor, b: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """``bmm(a, b)`` of (batch, n, m) and (batch, m, p), returned as a new tensor of ``shape`` (the batch dims split
    as the caller's; default (batch, n, p)) advised for huge pages before the product writes it."""
    out = torch.empty(shape or (a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device=a.device)
    advise_huge_pages(out)
    torch.bmm(a, b, out=out.view(a.shape[0], a.shape[1], b.shape[2]))
    return out


class _Product(torch.autograd.Function):
    """``bmm`` of 3-D ``a`` and ``b``, its output shaped ``shape``, with ``bmm``'s gradients, each product through
    :func:`_product` (while a graph of the backward is built, ``create_graph``, through plain ``bmm``: a product
    into a given tensor has no derivative). The output is not a view, so the caller may modify it in place without
    autograd copying it for the backward."""

    @staticmethod
    def forward(ctx, a, b, shape):  # noqa: D401 - autograd signature
        ctx.save_for_backward(a, b)
        return _product(a, b, shape)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad = grad.reshape(a.shape[0], a.shape[1], b.shape[2])
        product = torch.bmm if torch.is_grad_enabled() else _product
        grad_a = product(grad, b.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_b = product(a.transpose(1, 2), grad) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


def batched_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for (..., n, m) and (..., m, p) tensors of the same batch dims (autocast's dtype where it is on),
    whose output and gradients are made on huge pages (module doc) when one of them is
    :data:`HUGE_PAGE_MIN_BYTES` or more: bit for bit ``matmul``'s values and gradients. Elsewhere (no huge pages
    on request, small tensors, GPU, tracing, broadcast batch dims) it is ``a @ b``."""
    if (is_tracing() or a.device.type != "cpu" or a.dim() < 3 or a.shape[:-2] != b.shape[:-2]
            or not supported()):  # tracing first: Dynamo must not trace the file read
        return a @ b
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        a, b = (t.to(dtype) if t.is_floating_point() else t for t in (a, b))
    out_bytes = a.shape[:-1].numel() * b.shape[-1] * a.element_size()
    if a.dtype != b.dtype or max(out_bytes, a.nbytes, b.nbytes) < HUGE_PAGE_MIN_BYTES:
        return a @ b  # small (or matmul's own error)
    # as matmul runs it: one bmm over the flattened batch, keeping the flattened operands for the backward (copies
    # where the batch dims do not flatten in place, so that a view into a larger tensor, such as q, k and v of one
    # qkv projection, does not keep that tensor alive)
    a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    shape = (*a.shape[:-1], b.shape[-1])
    with torch.autocast("cpu", enabled=False):
        if torch.is_grad_enabled() and (a3.requires_grad or b3.requires_grad):
            return _Product.apply(a3, b3, shape)
        return _product(a3, b3, shape)
