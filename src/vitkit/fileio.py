"""Atomic file writes, once for the whole package: write a temporary file beside the target, fsync it, rename
it over the target, fsync the folder. A crash at any moment leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
from typing import Callable


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder (a folder: so that a rename inside it is durable)."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then fsync and rename over ``path``.

    The temporary name keeps the target's extension (``.loss.png.tmp-PID.png``), so writers that infer the
    format from it (matplotlib, safetensors) work unchanged.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}{os.path.splitext(name)[1]}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)
