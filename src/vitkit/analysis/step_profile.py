"""Where a training step spends its time, per aten op, for several implementations side by side.

:func:`profile_train_steps` profiles one step (forward, backward, AdamW) of each implementation per run, the
implementations interleaved, and keeps each op's fastest run: a busy machine inflates the table less than it
inflates one long timing. :func:`dense_split` divides a step into the *dense kernels* (matrix products, fused
attention, convolutions) and the rest. Two implementations of one model do the same dense arithmetic through
the same kernels, so if those run equally fast, ``total / dense`` bounds how much faster any implementation
can make the step by changing everything else (Amdahl's law); the closing notes quote that bound beside the
measured ratio.

:func:`count_step_faults` counts the minor page faults each op takes in one step: every tensor above malloc's mmap
threshold is fresh pages from the kernel, a fault and a zero-fill per 4 KiB, which the profiler books as the
op's own time (a ``q k^T`` product into a new 118 MB tensor: 102 ms, into a reused one 33 ms).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

if TYPE_CHECKING:
    from .benchmark import MakeOptimizer

#: ops whose self time is the model's dense arithmetic (same FLOPs in every implementation of a model)
DENSE_PREFIXES = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product",
                  "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv",
                  "aten::slow_conv", "aten::cudnn_convolution", "aten::_convolution", "aten::mkldnn_rnn",
                  "mkldnn::_linear_pointwise")  # oneDNN's linear: vitkit's bf16 training and fused inference GEMMs


def is_dense(op: str) -> bool:
    """Whether ``op`` (a profiler key such as ``aten::addmm``) is a dense kernel (see :data:`DENSE_PREFIXES`)."""
    return op.startswith(DENSE_PREFIXES)


@dataclass
class OpTable:
    """Per-op self time of one implementation's training step: ``ops[name] = (ms, calls)`` (fastest run)."""

    ops: dict[str, tuple[float, int]] = field(default_factory=dict)
    totals_ms: list[float] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        """The fastest run's total self time."""
        return min(self.totals_ms) if self.totals_ms else 0.0

    def add_run(self, averages) -> None:
        """Fold one profiler run (``prof.key_averages()``) in: per op, the fastest run wins."""
        self.totals_ms.append(sum(e.self_cpu_time_total for e in averages) / 1e3)
        for e in averages:
            ms = e.self_cpu_time_total / 1e3
            if e.key not in self.ops or ms < self.ops[e.key][0]:
                self.ops[e.key] = (ms, e.count)


def dense_split(table: OpTable) -> tuple[float, float]:
    """(dense-kernel ms, total ms) of the fastest run; total / dense is the Amdahl bound described above."""
    dense = sum(ms for op, (ms, _) in table.ops.items() if is_dense(op))
    return dense, max(table.total_ms, dense)


def profile_train_steps(
    models: dict[str, nn.Module], x: torch.Tensor, amp_dtype: torch.dtype | None = None, runs: int = 3,
    make_optimizer: MakeOptimizer | None = None,
) -> dict[str, OpTable]:
    """Per-op tables of one training step of each model, ``runs`` interleaved profiled steps after one warm-up;
    each model steps with what ``make_optimizer(name, model)`` builds (pass the timed steps' own, so the table
    profiles the step that was timed), torch's default AdamW without it."""
    from .benchmark import step_optimizer, train_step

    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    opts = {k: step_optimizer(k, m, make_optimizer) for k, m in models.items()}
    tables = {k: OpTable() for k in models}
    for k, m in models.items():
        m.train()
        train_step(m, x, target, opts[k], amp_dtype)
    for _ in range(runs):
        for k, m in models.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                train_step(m, x, target, opts[k], amp_dtype)
            tables[k].add_run(prof.key_averages())
    return tables


def format_op_tables(tables: dict[str, OpTable], top: int = 15) -> str:
    """The ``top`` ops by their largest self time across implementations, one column pair per implementation,
    then each implementation's total, dense-kernel share and Amdahl bound."""
    names = list(tables)
    ops = set().union(*(t.ops for t in tables.values()))
    ranked = sorted(ops, key=lambda op: -max(t.ops.get(op, (0.0, 0))[0] for t in tables.values()))[:top]
    head = f"{'op':<48}" + "".join(f"{n[:14] + ' ms':>18}{'calls':>7}" for n in names)
    lines = [head, "-" * len(head)]
    for op in ranked:
        cells = "".join(f"{tables[n].ops.get(op, (0.0, 0))[0]:>18.1f}{tables[n].ops.get(op, (0.0, 0))[1]:>7}"
                        for n in names)
        lines.append(f"{('* ' if is_dense(op) else '  ') + op[:46]:<48}{cells}")
    lines.append("-" * len(head))
    for n in names:
        dense, total = dense_split(tables[n])
        lines.append(f"{n}: total {total:.0f} ms, dense kernels (*) {dense:.0f} ms = {dense / total:.0%}; "
                     f"the rest made free would give at most {total / dense:.2f}x")
    return "\n".join(lines)


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class PageFaults(TorchDispatchMode):
    """Inside it, ``ops[name] = [faults, calls]``: the process's minor page faults taken inside each aten op."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, list[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        before = _minor_faults()
        out = func(*args, **(kwargs or {}))
        entry = self.ops.setdefault(str(func), [0, 0])
        entry[0] += _minor_faults() - before
        entry[1] += 1
        return out


def count_step_faults(
    models: dict[str, nn.Module], x: torch.Tensor, amp_dtype: torch.dtype | None = None,
    make_optimizer: MakeOptimizer | None = None,
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per model, ``{op: (minor page faults, calls)}`` of one training step after one warm-up step (POSIX only:
    an empty dict per model elsewhere); optimisers as in :func:`profile_train_steps`."""
    from .benchmark import step_optimizer, train_step

    try:
        _minor_faults()
    except ImportError:
        return {k: {} for k in models}
    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    counts = {}
    for k, m in models.items():
        opt = step_optimizer(k, m, make_optimizer)
        m.train()
        train_step(m, x, target, opt, amp_dtype)
        with PageFaults() as seen:
            train_step(m, x, target, opt, amp_dtype)
        counts[k] = {op: (f, c) for op, (f, c) in seen.ops.items()}
    return counts


def format_fault_tables(counts: dict[str, dict[str, tuple[int, int]]], top: int = 10) -> str:
    """The ``top`` ops by their most page faults across implementations, then each implementation's total."""
    names = list(counts)
    ops = set().union(*counts.values())
    ranked = sorted(ops, key=lambda op: -max(c.get(op, (0, 0))[0] for c in counts.values()))[:top]
    head = f"{'op':<48}" + "".join(f"{n[:14] + ' faults':>22}{'calls':>7}" for n in names)
    lines = [head, "-" * len(head)]
    for op in ranked:
        cells = (counts[n].get(op, (0, 0)) for n in names)
        lines.append(f"{op[:46]:<48}" + "".join(f"{faults:>22}{calls:>7}" for faults, calls in cells))
    lines.append("-" * len(head))
    totals = (f"{n}: {sum(f for f, _ in counts[n].values())} minor page faults in the step" for n in names)
    lines.append("; ".join(totals))
    return "\n".join(lines)
