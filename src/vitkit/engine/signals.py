"""Graceful stops on SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send before killing a job).

The first signal sets a flag: the training loop finishes the step it is in, writes a checkpoint (atomically,
as every checkpoint), prints how to resume and raises :class:`Interrupted`; the command exits with
``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), the shell convention. A second signal stops at once
(``KeyboardInterrupt``), leaving the previous checkpoint intact. Duplicates that arrive within
:data:`DUPLICATE_S` of the first count as one: under ``torchrun`` a Ctrl-C reaches each rank twice, once from
the terminal and once forwarded by the agent.

The training loader's workers ignore both signals (:func:`ignore_all_in_worker`), so neither a Ctrl-C to the
terminal's process group nor a scheduler's SIGTERM to every process kills them under the step being finished;
the trainer ends them itself on any exit (:func:`shutdown_workers`), and they exit on their own when the main
process dies. Evaluation workers ignore SIGINT only. Under DDP the flag is
all-reduced every step (:func:`any_rank`), so every rank stops after the same step.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Any

import torch

from . import distributed as D

__all__ = ["Interrupted", "GracefulStop", "ignore_in_worker", "ignore_all_in_worker", "shutdown_workers", "any_rank",
           "DUPLICATE_S"]

DUPLICATE_S = 1.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; ``exit_code`` is ``128 + signal``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop:
    """Context manager: while active, SIGINT/SIGTERM request a stop; a second one stops at once.

    Only the main thread can install handlers; elsewhere (a notebook's worker thread) it does nothing.
    """

    def __init__(self, log=print) -> None:
        self.log = log
        self.signum: int | None = None
        self._first = 0.0
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first = signum, now
            self.log(f"\n{signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
                     "(send it again to stop at once)")
            return
        if now - self._first < DUPLICATE_S:
            return
        self._restore()
        raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once")

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()


def ignore_in_worker(worker_id: int) -> None:
    """``worker_init_fn``: a Ctrl-C to the terminal's process group does not kill the worker under the step.

    SIGTERM keeps its default here, so ``multiprocessing`` can still terminate the worker at exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ignore_all_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` for the training loader: ignore SIGINT and SIGTERM (a scheduler signals every process).

    The owner must end the workers itself (:func:`shutdown_workers`); they also exit when the main process dies.
    """
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def shutdown_workers(loader) -> None:
    """End a DataLoader's persistent workers now (they would otherwise live as long as the loader object)."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    if hasattr(loader, "_iterator"):
        loader._iterator = None


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any (one tiny all-reduce under DDP, on the collective's device)."""
    if not D._active():
        return flag
    return bool(D.all_reduce_sum(torch.tensor([1.0 if flag else 0.0], device=device)).item() > 0)
