"""A process-wide on/off setting of the layers (the fused CPU linear, huge-page advice, subnormal flushing,
UniFormer's large backward chunks), set for a block by a context manager that puts back what was there."""
from __future__ import annotations

import contextlib
from typing import Iterator


class Switch:
    """An on/off setting: ``on`` is read where the setting acts; :meth:`set` changes it for a block."""

    def __init__(self, on: bool = True) -> None:
        self.on = on

    @contextlib.contextmanager
    def set(self, enabled: bool) -> Iterator[None]:
        """``on = enabled`` inside the block; the previous value comes back after, however the block ends."""
        before, self.on = self.on, enabled
        try:
            yield
        finally:
            self.on = before
