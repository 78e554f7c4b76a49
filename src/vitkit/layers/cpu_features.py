"""What the CPU this process runs on can do, where a kernel choice depends on it.

The choices that read it measured both ways on a CPU with bf16 units (Xeon Sapphire Rapids, AMX); on CPUs
without them (bf16 emulated) they keep PyTorch's default kernels, which earlier measurements there favoured.
"""
from __future__ import annotations

import functools

import torch

#: /proc/cpuinfo flags of native bf16 matrix arithmetic (AMX tiles; AVX-512 bf16 dot products)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``cpuinfo`` (empty where that file does not exist, e.g. macOS)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@torch.compiler.assume_constant_result
def native_bf16() -> bool:
    """Whether the CPU multiplies bf16 matrices in hardware (one of :data:`BF16_FLAGS`).

    A constant to TorchDynamo (:func:`torch.compiler.assume_constant_result`): it is evaluated once when traced,
    not traced into (the file read behind it broke a compiled graph at every bf16 Linear)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)
