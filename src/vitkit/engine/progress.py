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
