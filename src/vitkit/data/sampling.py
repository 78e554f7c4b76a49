"""Temporal sampling: which frame indices a clip of ``T x tau`` takes.

A clip of ``num_frames`` frames at sampling rate ``tau`` spans
``(num_frames - 1) * tau + 1`` source frames and takes exactly
``start + i * tau`` for ``i in range(num_frames)`` (not ``num_frames * tau``:
that window gives strides 4,4,4,5 - VideoMAE#97).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

__all__ = ["clip_span", "clip_indices", "random_clip_start", "uniform_clip_starts"]


def clip_span(num_frames: int, sampling_rate: int) -> int:
    """Number of source frames covered by a ``num_frames x sampling_rate`` clip."""
    if num_frames < 1 or sampling_rate < 1:
        raise ValueError(f"num_frames and sampling_rate must be >= 1, got {num_frames}, {sampling_rate}")
    return (num_frames - 1) * sampling_rate + 1


def clip_indices(start: int, num_frames: int, sampling_rate: int, video_frames: int) -> list[int]:
    """Frame indices ``start + i * sampling_rate``; indices past the end repeat the last frame."""
    if video_frames < 1:
        raise ValueError("video has no frames")
    return [min(start + i * sampling_rate, video_frames - 1) for i in range(num_frames)]


def random_clip_start(video_frames: int, span: int, generator: torch.Generator | None = None) -> int:
    """Uniform random start so that the clip lies inside the video (0 when it cannot)."""
    room = max(video_frames - span, 0)
    return int(torch.randint(room + 1, (1,), generator=generator).item())


def uniform_clip_starts(video_frames: int, span: int, num_clips: int, path: str = "") -> list[int]:
    """``num_clips`` starts spaced uniformly from the first to the last possible start.

    Starts are distinct when the video has at least ``span + num_clips - 1`` frames;
    otherwise a warning names the video, since repeated views silently equal fewer views.
    """
    room = max(video_frames - span, 0)
    if num_clips == 1:
        return [room // 2]
    starts = [round(k * room / (num_clips - 1)) for k in range(num_clips)]
    if len(set(starts)) < num_clips:
        log.warning("%s: %d frames give only %d distinct starts for %d clips of span %d",
                    path or "video", video_frames, len(set(starts)), num_clips, span)
    return starts
