"""A dispatch mode for tests that pin down which kernels a computation runs and what they get or make."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch


class OpCalls(torch.utils._python_dispatch.TorchDispatchMode):
    """Inside it, ``seen`` collects ``read(func, args, out)`` for every call of the ops in ``ops`` (of every op
    when None), leaving out None."""

    def __init__(self, read: Callable[[Any, tuple, Any], Any], ops: Iterable | None = None) -> None:
        super().__init__()
        self.read, self.ops = read, None if ops is None else tuple(ops)
        self.seen: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.ops is None or func in self.ops:
            record = self.read(func, args, out)
            if record is not None:
                self.seen.append(record)
        return out
