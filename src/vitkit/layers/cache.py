"""One bounded cache for tensors a forward pass derives from sizes or weights, with the same rules everywhere.

Used for Swin's window orders, shift masks and bias indices (:mod:`vitkit.layers.windows`), Swin's evaluation
bias, and MViTv2's relative-distance tables. The rules:

* **bounded** - least recently used entries go first, beyond ``maxsize`` entries or ``max_bytes`` of tensor
  memory (meta tensors weigh nothing);
* **usable by training whatever mode filled it** - values are built with inference mode and autograd off, so
  a forward under ``torch.inference_mode()`` (evaluation, benchmarks) followed by training does not fail with
  "Inference tensors cannot be saved for backward", and a cached value never holds a graph;
* **never a tracer's placeholder** - while TorchScript, ``torch.compile`` or ``torch.export`` trace, values are
  built afresh and not kept (a kept fake tensor would break later eager calls);
* **not copied** - ``copy.deepcopy`` (EMA) and pickling give an empty cache of the same bounds.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch

from .fused import is_tracing

_MISS = object()


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return 0 if value.device.type == "meta" else value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


class TensorCache:
    """Least-recently-used cache of values (tensors, or tuples holding them) built by a function on a miss."""

    def __init__(self, maxsize: int, max_bytes: int | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any], stale: Callable[[Any], bool] | None = None) -> Any:
        """The value for ``key``, from ``build()`` on a miss (or when ``stale(value)`` says the entry is out of date)."""
        if is_tracing():
            return build()
        with self._lock:
            hit = self._data.get(key, _MISS)
            if hit is not _MISS and (stale is None or not stale(hit[0])):
                self._data.move_to_end(key)
                return hit[0]
        with torch.inference_mode(False), torch.no_grad():
            value = build()
        size = _nbytes(value)
        with self._lock:
            old = self._data.pop(key, _MISS)
            if old is not _MISS:
                self._bytes -= old[1]
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self.maxsize or (
                self.max_bytes is not None and self._bytes > self.max_bytes and len(self._data) > 1
            ):
                _, (_, freed) = self._data.popitem(last=False)
                self._bytes -= freed
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Tensor memory held now."""
        return self._bytes

    def __reduce__(self):
        return (type(self), (self.maxsize, self.max_bytes))
