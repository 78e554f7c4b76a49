"""Timing helpers for side-by-side benchmarks: this CPU's matmul peak, forward throughput, tables and JSON.

Method (what users asked of benchmark scripts): warm-up runs first, ``torch.inference_mode``, the median of
repeated timed runs, CUDA synchronised where there is a GPU, and the fraction of the measured matmul peak
(``2 * MACs * items/s / peak FLOP/s``) so a figure can be compared across machines.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn as nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` (bf16/fp16) on ``device``, or a no-op for fp32 / None."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def matmul_peak(
    dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5, device: str | torch.device = "cpu"
) -> float:
    """Measured FLOP/s of a square ``size`` matmul in ``dtype`` with the current thread count (best of ``repeats``)."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def time_forward(
    model: nn.Module,
    x: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 2,
    iters: int = 5,
    min_seconds: float = 0.0,
) -> dict[str, float]:
    """Median seconds per forward of ``model(x)`` in eval + inference mode (optionally under autocast).

    Returns ``seconds`` (median), ``items_per_s`` (batch / median), ``all`` (every timed run).
    """
    model.eval()
    device = x.device
    times: list[float] = []
    with torch.inference_mode(), autocast_context(device, amp_dtype):
        for _ in range(warmup):
            model(x)
        start = time.perf_counter()
        while len(times) < iters or time.perf_counter() - start < min_seconds:
            _sync(device)
            t = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"seconds": med, "items_per_s": x.shape[0] / med, "all": times}


def time_interleaved(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 1,
    iters: int = 5,
) -> dict[str, dict[str, float]]:
    """Time several models on the same input round-robin (one run of each per round), median per model.

    Round-robin spreads drift in machine load evenly over the implementations being compared, so their
    ratio stays meaningful on a busy machine. Returns ``{name: time_forward-style dict}``.
    """
    device = x.device
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.eval()
    with torch.inference_mode(), autocast_context(device, amp_dtype):
        for m in models.values():
            for _ in range(warmup):
                m(x)
        for _ in range(iters):
            for name, m in models.items():
                _sync(device)
                t = time.perf_counter()
                m(x)
                _sync(device)
                times[name].append(time.perf_counter() - t)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"seconds": med, "items_per_s": x.shape[0] / med, "all": ts}
    return out


def measure_interleaved(
    models: dict[str, nn.Module],
    name: str,
    x: torch.Tensor,
    macs_per_item: int,
    peaks: dict[str, float],
    dtypes: Sequence[str] = ("fp32", "bf16"),
    iters: int = 5,
    warmup: int = 1,
) -> list["BenchRow"]:
    """:func:`measure` for several implementations at once, timed round-robin (see :func:`time_interleaved`)."""
    rows = []
    for d in dtypes:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[d]
        res = time_interleaved(models, x, amp, warmup=warmup, iters=iters)
        for impl, r in res.items():
            ips = r["items_per_s"]
            rows.append(
                BenchRow(impl, name, d, x.shape[0], ips, r["seconds"] * 1e3, macs_per_item,
                         2 * macs_per_item * ips / peaks[d] if peaks.get(d) else float("nan"))
            )
    return rows


@dataclass
class BenchRow:
    """One measured configuration: implementation, precision, throughput, fraction of peak, ratios to peers."""

    impl: str
    model: str
    dtype: str
    batch: int
    items_per_s: float
    latency_ms: float
    macs_per_item: int
    frac_peak: float
    ratios: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


def measure(
    impl: str,
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    macs_per_item: int,
    peaks: dict[str, float],
    dtypes: Sequence[str] = ("fp32", "bf16"),
    iters: int = 5,
    warmup: int = 2,
) -> list[BenchRow]:
    """Time ``model(x)`` under each precision; ``peaks`` maps 'fp32'/'bf16' to this machine's FLOP/s."""
    rows = []
    for d in dtypes:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[d]
        r = time_forward(model, x, amp, warmup=warmup, iters=iters)
        ips = r["items_per_s"]
        rows.append(
            BenchRow(impl, name, d, x.shape[0], ips, r["seconds"] * 1e3, macs_per_item,
                     2 * macs_per_item * ips / peaks[d] if peaks.get(d) else float("nan"))
        )
    return rows


def add_ratios(rows: list[BenchRow], ours: str = "vitkit") -> None:
    """Fill ``ratios`` of our rows: our items/s over each peer's, per precision."""
    for r in rows:
        if r.impl != ours:
            continue
        for p in rows:
            if p.impl != ours and p.dtype == r.dtype and p.batch == r.batch:
                r.ratios[p.impl] = r.items_per_s / p.items_per_s


def format_table(rows: Iterable[BenchRow], unit: str = "img/s") -> str:
    rows = list(rows)
    head = f"{'impl':<14}{'model':<32}{'dtype':<6}{'batch':>6}{unit:>10}{'ms':>9}{'%peak':>7}  ratios"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r.ratios.items())
        lines.append(
            f"{r.impl:<14}{r.model:<32}{r.dtype:<6}{r.batch:>6}{r.items_per_s:>10.2f}{r.latency_ms:>9.1f}"
            f"{100 * r.frac_peak:>6.1f}%  {ratios}"
        )
    return "\n".join(lines)


def environment() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: str, rows: Iterable[BenchRow], peaks: dict[str, float], **extra) -> None:
    """Write rows, peaks and the environment as JSON (creating the folder)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = {"environment": environment(), "matmul_peak_flops": peaks, "rows": [asdict(r) for r in rows], **extra}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
