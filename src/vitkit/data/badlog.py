"""Bad-sample bookkeeping that works across DataLoader worker processes.

Each dataset owns a private temporary directory. Reporting a bad sample
creates one small file there, named by a hash of the path, with
``O_CREAT | O_EXCL``: the first process (main or any worker, forked or
spawned) to report a path creates the file and logs the warning; the others
see that it exists and stay quiet. :meth:`BadSampleLog.items` reads the
directory, so the main process sees what its workers found. The directory is
removed when the owning dataset is garbage collected or the program exits
(only by the process that created it).

A training run says each bad file once, not once per rank and dataset: the trainer opens a
:func:`run_scope` (a directory shared by every rank on the node and inherited by the DataLoader
workers through ``VITKIT_BAD_SAMPLE_DIR``) and a warning is logged only by the first process of the
run to claim the path there. The per-dataset records (counts, :meth:`BadSampleLog.items`) are kept as
before.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref

log = logging.getLogger("vitkit.data")

__all__ = ["BadSampleLog", "run_scope"]

RUN_DIR_ENV = "VITKIT_BAD_SAMPLE_DIR"


def _claim(directory: str, path: str) -> bool:
    """Create ``directory/<hash of path>`` exclusively; True for the first caller (or when it cannot tell)."""
    marker = os.path.join(directory, hashlib.sha1(path.encode()).hexdigest())
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def _first_in_run(path: str) -> bool:
    directory = os.environ.get(RUN_DIR_ENV)
    return True if not directory else _claim(directory, path)


class run_scope:
    """Context manager: within it, each bad path is warned about once for the whole run (all datasets).

    ``directory`` is shared by the processes of the run (the trainer creates one on rank 0 and broadcasts it);
    None creates a private one. The environment variable is restored and the directory removed on exit.
    """

    def __init__(self, directory: str | None = None, owner: bool = True) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="vitkit-badrun-")
        self.owner = owner
        self._previous: str | None = None

    def __enter__(self) -> "run_scope":
        self._previous = os.environ.get(RUN_DIR_ENV)
        os.environ[RUN_DIR_ENV] = self.directory
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = self._previous
        if self.owner:
            shutil.rmtree(self.directory, ignore_errors=True)


def _cleanup(directory: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


class BadSampleLog:
    """Set of ``path -> reason`` shared by a dataset and its worker processes."""

    KIND = "bad sample"  # how the warning names an entry (SampleNotes: "note")

    def __init__(self, name: str = "dataset"):
        self.name = name
        self.directory = tempfile.mkdtemp(prefix="vitkit-bad-")
        self._seen: dict[str, str] = {}
        self._unusable: set[str] = set()
        self._finalizer = weakref.finalize(self, _cleanup, self.directory, os.getpid())

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_finalizer", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __contains__(self, path: str) -> bool:
        """True when the file itself cannot be used (not for a rejected list line naming it)."""
        return path in self._unusable

    def report(self, path: str, reason: str, action: str = "replaced by another sample",
               unusable: bool = True) -> None:
        """Record ``path`` as bad; logs a warning the first time any process reports it.

        ``unusable=False`` records a problem of one list entry (e.g. its label) without
        marking the file unreadable for other entries that name it.
        """
        if unusable:
            self._unusable.add(path)
        if path in self._seen:
            return
        self._seen[path] = reason
        marker = os.path.join(self.directory, hashlib.sha1(path.encode()).hexdigest())
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return
        except OSError:  # directory gone (dataset closed): still tell the user
            if _first_in_run(self._run_key(path)):
                log.warning("%s: %s %s: %s", self.name, self.KIND, path, reason)
            return
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{path}\n{reason}\n")
        if _first_in_run(self._run_key(path)):
            log.warning("%s: %s %s: %s%s", self.name, self.KIND, path, reason, f" ({action})" if action else "")

    def _run_key(self, path: str) -> str:
        """The once-per-run key: the path for bad samples, prefixed for other kinds (notes) so both are said."""
        return path if self.KIND == BadSampleLog.KIND else f"{self.KIND}:{path}"

    def items(self) -> dict[str, str]:
        """All bad samples reported by any process so far: ``{path: reason}``."""
        out = dict(self._seen)
        try:
            names = os.listdir(self.directory)
        except OSError:
            return out
        for name in names:
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                    path, reason = (f.read().split("\n") + ["", ""])[:2]
            except OSError:
                continue
            if path:
                out.setdefault(path, reason)
        return out

    def close(self) -> None:
        """Remove the directory now (owner process only)."""
        self._finalizer()


class SampleNotes(BadSampleLog):
    """Usable samples worth telling the user about (a short video padded, an image given as a video)."""

    KIND = "note on"
