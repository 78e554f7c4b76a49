"""The run directory's safety: one run at a time, no silent re-use, enough room before the first step.

- :class:`RunLock`: an exclusive ``fcntl`` lock on ``<run>/.lock`` for the run's life. The kernel drops it when
  the process ends in any way (exception, signal, ``SIGKILL``), so a lock left by a dead process is stale by
  construction: the next run takes it and says whose it was. The file records pid, host and start time for the
  message a second run gets.
- :func:`check_reuse`: a directory that already holds a run (metrics, checkpoints, results) is refused unless
  the user resumes it (``--resume``) or asks to start over (``--overwrite``, which removes only the files a run
  writes). This is PySlowFast's and mmaction2's ``--resume`` / work-dir convention made explicit; vitkit refuses
  rather than silently numbering a new directory, so the path the user typed is the path that gets written.
- :func:`preflight`: the directory can be created and written, and its filesystem has room for the checkpoints
  the run will keep; leftovers of interrupted checkpoint writes are removed. Failures are :class:`RunDirError`,
  one line naming the path and the permission or space needed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
from pathlib import Path

__all__ = ["RunDirError", "RunLock", "claim", "check_reuse", "clear_run", "preflight", "checkpoint_bytes", "clean_leftovers",
           "space_error", "write_guard", "RUN_FILES"]

LOCK_FILE = ".lock"
#: what a run writes into its directory (``--overwrite`` removes exactly these)
RUN_FILES = ("metrics.jsonl", "results.json", "recipe.yaml", "model.safetensors", "ema.safetensors",
             "loss.png", "lr.png", "accuracy.png", "checkpoints")


class RunDirError(OSError):
    """The run directory cannot be used: locked, already holding a run, unwritable or out of space."""


def _mb(n: float) -> str:
    if n < 2**20:
        return f"{n / 2**10:,.0f} KB"
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


class RunLock:
    """Exclusive lock on a run directory; a context manager, also released by :meth:`release` or process exit."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.stale: str | None = None  # the previous holder's record, when a dead process left the file

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunDirError(f"run directory {self.path.parent} is in use by another training ({holder}); "
                              "wait for it, stop it, or choose another run.dir") from None
        except OSError as e:  # a filesystem without locks: fall back to the pid record
            holder = _read(fd)
            if holder and _alive(holder):
                os.close(fd)
                raise RunDirError(f"run directory {self.path.parent} is in use by another training ({holder})") from e
        previous = _read(fd)
        if previous:
            self.stale = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty record: released cleanly
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; the pid record decides
        raise OSError(errno.ENOLCK, "no fcntl") from None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(record: str) -> bool:
    """Whether the process a lock record names still runs (same host only; another host counts as alive)."""
    parts = record.split()
    try:
        pid, host = int(parts[1]), parts[3]
    except (IndexError, ValueError):
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _previous_run(run_dir: Path) -> str | None:
    """A description of the run already in ``run_dir``, or None when it holds none."""
    ck = run_dir / "checkpoints"
    steps = sorted(p.name for p in ck.glob("step_*")) if ck.is_dir() else []
    if (run_dir / "results.json").is_file():
        return "a finished run (results.json" + (f", last checkpoint {steps[-1]})" if steps else ")")
    if steps:
        return f"an unfinished run (last checkpoint {steps[-1]})"
    if (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size:
        return "an earlier run's metrics.jsonl"
    return None


def check_reuse(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> str | None:
    """Refuse a directory that holds a run unless resuming or overwriting; returns what was there (or None)."""
    run_dir = Path(run_dir)
    found = _previous_run(run_dir)
    if found is None or resume:
        return found
    if overwrite:
        clear_run(run_dir)
        return found
    raise RunDirError(f"run directory {run_dir} already holds {found}; continue it with "
                      f"`vitkit train --resume {run_dir}`, start it over with `--overwrite`, or choose another "
                      "run.dir / run.name")


def clear_run(run_dir: str | os.PathLike) -> None:
    """Remove what a run wrote (:data:`RUN_FILES`), nothing else."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def checkpoint_bytes(model, ema: bool, optimizer_slots: int = 2) -> int:
    """Bytes one checkpoint takes: weights, EMA weights and the optimiser's per-parameter slots (AdamW: 2)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights * (2 if ema else 1) + params * optimizer_slots


def claim(run_dir: str | os.PathLike, dist, *, resume: bool, overwrite: bool, needed: int, keep: int,
          log=print) -> RunLock | None:
    """Everything a run needs of its directory before the first step, on the main rank; errors reach every rank.

    Writable with room (:func:`preflight`), locked (:class:`RunLock`), not holding another run
    (:func:`check_reuse`), leftovers of interrupted checkpoint writes removed. Returns the held lock (None on
    other ranks); raises :class:`RunDirError` on every rank when the main rank cannot use the directory.
    """
    from . import distributed as D

    lock, err = None, None
    if dist.is_main:
        try:
            preflight(run_dir, needed, keep)
            lock = RunLock(run_dir).acquire()
            try:
                if lock.stale:
                    log(f"note: {run_dir} was locked by a training that is gone ({lock.stale}); lock taken over")
                found = check_reuse(run_dir, resume=resume, overwrite=overwrite)
                if found and overwrite and not resume:
                    log(f"--overwrite: removed {found} from {run_dir}")
                gone = clean_leftovers(Path(run_dir) / "checkpoints")
                if gone:
                    log(f"removed {len(gone)} leftover(s) of interrupted checkpoint writes: {gone[0].name} ...")
            except BaseException:
                lock.release()
                raise
        except RunDirError as e:
            err = str(e)
    err = D.broadcast_object(err)
    if err:
        raise RunDirError(err)
    return lock


def preflight(run_dir: str | os.PathLike, needed: int, keep: int) -> None:
    """Check ``run_dir`` can be created and written, with room for the run's checkpoints of ``needed`` bytes.

    Room for ``keep + 2``: the newest ``keep``, the one being written before pruning, and the final weights.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise RunDirError(f"cannot create run directory {run_dir}: no write permission on "
                          f"{_existing_parent(run_dir)}") from None
    except OSError as e:
        raise RunDirError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        what = ("is read-only" if e.errno == errno.EROFS else "is not writable (permission denied)"
                if e.errno in (errno.EACCES, errno.EPERM) else "has no space left" if e.errno == errno.ENOSPC
                else f"cannot be written ({e.strerror})")
        raise RunDirError(f"run directory {run_dir} {what}; a run writes its checkpoints there "
                          f"(about {_mb(needed)} each)") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    total = needed * (max(keep, 1) + 2)
    free = shutil.disk_usage(run_dir).free
    if free < total:
        raise RunDirError(f"run directory {run_dir}: {_mb(free)} free, the run needs about {_mb(total)} "
                          f"({max(keep, 1) + 2} x {_mb(needed)} checkpoints, run.keep={keep}); free space, lower "
                          "run.keep or choose another run.dir")


def clean_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary folders and pointer files of checkpoint writes that never finished (the lock is held)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in [*folder.glob(".tmp-*"), *folder.glob(".old-*"), *folder.glob(".latest.tmp-*")]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def _existing_parent(p: Path) -> Path:
    for c in (p, *p.parents):
        if c.exists():
            return c
    return p


@contextlib.contextmanager
def write_guard(path: str | os.PathLike, needed: int):
    """Turn a failed write under ``path`` (``OSError``, or safetensors' error wrapping one) into :func:`space_error`."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as e:
        if isinstance(e, RunDirError) or (isinstance(e, SafetensorError) and _errno(e) is None):
            raise
        raise space_error(path, needed, e) from e


def _errno(e: BaseException) -> int | None:
    if getattr(e, "errno", None):
        return e.errno
    m = re.search(r"os error (\d+)", str(e))
    return int(m.group(1)) if m else None


def space_error(path: str | os.PathLike, needed: int, err: BaseException) -> RunDirError:
    """A one-line :class:`RunDirError` for a failed write (disk full, read-only, permission)."""
    path = Path(path)
    code = _errno(err)
    where = _existing_parent(path)
    try:
        free = _mb(shutil.disk_usage(where).free)
    except OSError:
        free = "unknown space"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return RunDirError(f"disk full writing {path}: {free} free, a checkpoint needs about {_mb(needed)}; "
                           "free space or lower run.keep, then continue with `vitkit train --resume`")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RunDirError(f"cannot write {path}: {'read-only filesystem' if code == errno.EROFS else 'permission denied'}"
                           f"; a checkpoint needs write permission there and about {_mb(needed)}")
    return RunDirError(f"cannot write {path}: {getattr(err, 'strerror', None) or err}")
