"""Progress bars (tqdm, with throughput and ETA) on a terminal only; plain iteration otherwise."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def progress_bar(it: Iterable[T], *, enabled: bool = True, **kwargs) -> Iterable[T]:
    """``tqdm(it, **kwargs)`` when ``enabled`` and stderr is a terminal, else ``it`` unchanged."""
    if not (enabled and on_terminal()):
        return it
    from tqdm import tqdm

    return tqdm(it, dynamic_ncols=True, leave=False, **kwargs)


class EtaMeter:
    """Time left from a smoothed rate: an exponential moving average of seconds per step over log windows.

    One slow window (an evaluation, a checkpoint, workers starting) moves the estimate by ``smoothing`` of its
    excess instead of replacing it, as tqdm's ``smoothing`` does for its bars.
    """

    def __init__(self, smoothing: float = 0.3) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.smoothing = smoothing
        self.seconds_per_step: float | None = None

    def update(self, steps: int, seconds: float) -> None:
        """Record a window of ``steps`` optimiser steps that took ``seconds``."""
        if steps <= 0:
            return
        rate = seconds / steps
        prev = self.seconds_per_step
        self.seconds_per_step = rate if prev is None else self.smoothing * rate + (1 - self.smoothing) * prev

    def eta(self, remaining_steps: int) -> float:
        """Seconds left for ``remaining_steps`` (nan before the first window)."""
        if self.seconds_per_step is None:
            return float("nan")
        return max(remaining_steps, 0) * self.seconds_per_step


def format_eta(seconds: float) -> str:
    """``95`` -> ``1m35s``, ``4000`` -> ``1h06m``; ``?`` when unknown."""
    if seconds != seconds:  # nan
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
