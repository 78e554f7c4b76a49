"""Bad-sample bookkeeping that works across DataLoader worker processes.

Each dataset owns a private temporary directory. Reporting a bad sample
creates one small file there, named by a hash of the path, with
``O_CREAT | O_EXCL``: the first process (main or any worker, forked or
spawned) to report a path creates the file and logs the warning; the others
see that it exists and stay quiet. :meth:`BadSampleLog.items` reads the
directory, so the main process sees what its workers found. The directory is
removed when the owning dataset is garbage collected or the program exits
(only by the process that created it).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref

log = logging.getLogger("vitkit.data")

__all__ = ["BadSampleLog"]


def _cleanup(directory: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


class BadSampleLog:
    """Set of ``path -> reason`` shared by a dataset and its worker processes."""

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
            log.warning("%s: bad sample %s: %s", self.name, path, reason)
            return
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{path}\n{reason}\n")
        log.warning("%s: bad sample %s: %s (%s)", self.name, path, reason, action)

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
