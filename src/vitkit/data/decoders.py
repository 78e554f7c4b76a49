"""Clip readers: one interface over PyAV (default), torchcodec, decord and folders of extracted frames.

A reader answers two questions about a sample path: how many frames it has (``num_frames``) and the frames at
given indices (``read`` -> uint8 ``(len(indices), 3, H, W)``, repeats allowed, any order). Frame ``i`` is the
``i``-th frame in presentation order whatever the reader, so the same indices give the same frames (to within
codec rounding) with every decoder; the samplers in :mod:`.sampling` choose the indices and only those frames
are decoded. A sample that cannot be read raises :class:`~vitkit.data.video.VideoError` with the reason.

``data.decoder`` in a recipe picks the reader for encoded files: ``pyav`` (default; demuxes once, then seeks -
exact for variable frame rate and non-zero start pts, see :mod:`.video`), ``torchcodec`` (``seek_mode='exact'``)
or ``decord``; the last two are optional installs. Directories are always read by :class:`~.frames.FrameFolderReader`.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Protocol, Sequence

import numpy as np
import torch

from .video import IndexCache, VideoError, decode_frames

__all__ = ["ClipReader", "PyAVReader", "TorchCodecReader", "DecordReader", "DECODERS", "build_reader",
           "available_decoders"]

DECODERS = ("pyav", "torchcodec", "decord")
_MODULE = {"pyav": "av", "torchcodec": "torchcodec", "decord": "decord"}


class ClipReader(Protocol):
    """What a dataset needs from a decoder."""

    name: str

    def num_frames(self, path: str) -> int: ...

    def read(self, path: str, indices: Sequence[int]) -> torch.Tensor: ...


def _check(path: str, indices: Sequence[int], n: int) -> None:
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"frame indices {bad[:4]} outside [0, {n}) of {path}")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoError("missing file")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")


class PyAVReader:
    """PyAV: demux once per file and process (cached), then seek and decode only the wanted frames."""

    name = "pyav"

    def __init__(self) -> None:
        self._cache = IndexCache()

    def num_frames(self, path: str) -> int:
        return self._cache.get(path).num_frames

    def read(self, path: str, indices: Sequence[int]) -> torch.Tensor:
        return decode_frames(self._cache.get(path), list(indices))[0]


class TorchCodecReader:
    """torchcodec's ``VideoDecoder`` in exact seek mode (it scans the file once, frame i in presentation order)."""

    name = "torchcodec"

    def __init__(self) -> None:
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - fail at construction when not installed

    def _open(self, path: str):
        from torchcodec.decoders import VideoDecoder

        _check_file(path)
        try:
            return VideoDecoder(path, seek_mode="exact", dimension_order="NCHW")
        except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError for bad files
            raise VideoError(f"cannot open: {type(e).__name__}: {e}") from e

    def num_frames(self, path: str) -> int:
        n = self._open(path).metadata.num_frames
        if not n:
            raise VideoError("no video frames")
        return int(n)

    def read(self, path: str, indices: Sequence[int]) -> torch.Tensor:
        dec = self._open(path)
        _check(path, indices, int(dec.metadata.num_frames or 0))
        uniq = sorted(set(int(i) for i in indices))
        try:
            frames = dec.get_frames_at(uniq).data
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"decode error: {type(e).__name__}: {e}") from e
        pos = {i: k for k, i in enumerate(uniq)}
        return frames[[pos[int(i)] for i in indices]].contiguous()


class DecordReader:
    """decord's ``VideoReader`` (frame count from the container; decord random access is not always exact)."""

    name = "decord"

    def __init__(self) -> None:
        import decord  # noqa: F401

    def _open(self, path: str):
        import decord

        _check_file(path)
        try:
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        except Exception as e:  # noqa: BLE001 - decord raises DECORDError
            raise VideoError(f"cannot open: {type(e).__name__}: {e}") from e

    def num_frames(self, path: str) -> int:
        n = len(self._open(path))
        if not n:
            raise VideoError("no video frames")
        return n

    def read(self, path: str, indices: Sequence[int]) -> torch.Tensor:
        vr = self._open(path)
        _check(path, indices, len(vr))
        try:
            arr = vr.get_batch(list(int(i) for i in indices)).asnumpy()
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"decode error: {type(e).__name__}: {e}") from e
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()


_READERS = {"pyav": PyAVReader, "torchcodec": TorchCodecReader, "decord": DecordReader}


def available_decoders() -> list[str]:
    """Decoders whose package is importable here (``pyav`` always)."""
    return [d for d in DECODERS if importlib.util.find_spec(_MODULE[d]) is not None]


def build_reader(name: str = "pyav") -> ClipReader:
    """The reader for ``data.decoder``; an unknown or uninstalled decoder is a configuration error."""
    if name not in _READERS:
        raise ValueError(f"data.decoder must be one of {', '.join(DECODERS)}, got {name!r}")
    try:
        return _READERS[name]()
    except ImportError as e:
        raise ValueError(f"data.decoder={name!r} needs the {_MODULE[name]!r} package "
                         f"(pip install {name}): {e}") from e
