"""Graph breaks and recompiles of a model under ``torch.compile``, without paying for code generation.

TorchDynamo decides where a graph breaks and when a new input shape forces a recompile before any backend
runs, so both are audited with the ``eager`` backend (tracing only; the compiled model runs the captured graph
with ordinary ops). :func:`audit` traces a training step (forward and backward; the backward graph comes from
the forward graph through AOTAutograd, so it has no breaks of its own) at each of several input sizes with
``dynamic=True`` (``train.compile: dynamic``; the default automatic mode compiles the first size static and
then once with symbolic sizes, so a model that keeps one graph here keeps two there) and reports the breaks with
their reasons, the number of graphs compiled, and the recompiles: graphs added after the first size, each with
the guard that failed. One graph per model over every size is the goal.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn as nn


@dataclass
class CompileAudit:
    """``graph_breaks``: count over one traced forward; ``reasons``: one line each; ``graphs``: frames compiled
    over all sizes (recompiles included); ``sizes``: the input shapes tried; ``graphs_per_size``: the running
    count of graphs after each size; ``recompiles``: graphs compiled after the first size; ``recompile_reasons``:
    the failed guard behind each (first line, source location kept)."""

    graph_breaks: int
    reasons: list[str] = field(default_factory=list)
    graphs: int = 0
    sizes: list[tuple[int, ...]] = field(default_factory=list)
    graphs_per_size: list[int] = field(default_factory=list)
    recompile_reasons: list[str] = field(default_factory=list)

    @property
    def recompiles(self) -> int:
        return self.graphs_per_size[-1] - self.graphs_per_size[0] if self.graphs_per_size else 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        # the message names the recompiled function, then one "- <guard>  # <source>" line per failed guard
        self.lines += [ln.strip()[2:] for ln in text.splitlines() if ln.strip().startswith("- ")]


@contextlib.contextmanager
def recompile_log() -> Iterator[list[str]]:
    """Collect TorchDynamo's recompile reasons (its ``recompiles`` log artifact) while the block runs."""
    import torch._logging

    handler = _Collect()
    logger = logging.getLogger("torch._dynamo.guards.__recompiles")
    torch._logging.set_logs(recompiles=True)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # collected here, not printed
    try:
        yield handler.lines
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)
        torch._logging.set_logs()


def audit(model: nn.Module, shapes: Sequence[Sequence[int]], recompiles: bool = True,
          inference: bool = False, amp_dtype: torch.dtype | None = None) -> CompileAudit:
    """Trace ``model`` on random inputs of each shape in ``shapes`` (first for :func:`torch._dynamo.explain`,
    then, with ``recompiles``, every shape through ``torch.compile(backend='eager', dynamic=True)`` with a
    backward pass; without, ``graphs`` is the count of the first trace). ``inference``: the first trace runs in
    eval mode without gradients (the path of a compiled model's evaluation and ``vitkit benchmark --compile``,
    which differs from training's, e.g. Swin's cached attention bias); it needs ``recompiles=False``.
    ``amp_dtype`` (bf16 / fp16): every trace runs under autocast on the CPU, as ``train.amp`` does, whose paths
    differ again (the bf16 training Linear, explicit attention, depthwise convolutions)."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    if inference and recompiles:
        raise ValueError("audit(inference=True) traces one forward; pass recompiles=False")
    model.train(not inference)
    first = torch.randn(*shapes[0])
    dynamo.reset()
    amp = torch.autocast("cpu", amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with torch.set_grad_enabled(not inference), amp:
        explained = dynamo.explain(model)(first)
    reasons = [f"{getattr(b, 'reason', b)}".splitlines()[0] for b in explained.break_reasons]
    dynamo.reset()
    if not recompiles:
        return CompileAudit(int(explained.graph_break_count), reasons, int(explained.graph_count),
                            [tuple(shapes[0])])
    counters.clear()
    compiled = torch.compile(model, backend="eager", dynamic=True)
    per_size = []
    with recompile_log() as why:
        for shape in shapes:
            with amp:
                out = compiled(torch.randn(*shape))
            (out if isinstance(out, torch.Tensor) else torch.cat([o.flatten() for o in out])).float().mean().backward()
            per_size.append(int(counters["stats"].get("unique_graphs", 0)))
    dynamo.reset()
    return CompileAudit(int(explained.graph_break_count), reasons, per_size[-1], [tuple(s) for s in shapes],
                        per_size, list(why))
