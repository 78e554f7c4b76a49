"""Temporal sampling: which frame indices a clip of ``T x tau`` takes.

A clip of ``num_frames`` frames at sampling rate ``tau`` spans
``(num_frames - 1) * tau + 1`` source frames and takes exactly
``start + i * tau`` for ``i in range(num_frames)`` (not ``num_frames * tau``:
that window gives strides 4,4,4,5 - VideoMAE#97).

*Segment* sampling (TSN; UniFormer's and PySlowFast's Something-Something
loader) instead covers the whole video whatever its length: the frames are cut
into ``T`` equal segments and one frame is taken from each, at random in
training and at the segment's centre in testing (:func:`segment_indices`).
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

import torch

from .short import clip_indices_for

log = logging.getLogger(__name__)

__all__ = ["clip_span", "clip_indices", "random_clip_start", "uniform_clip_starts", "segment_indices",
           "sample_clips", "clips_to_views", "SAMPLING_MODES"]

SAMPLING_MODES = ("dense", "segment")


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


def segment_indices(video_frames: int, num_segments: int, *, train: bool, clip: int = 0, num_clips: int = 1,
                    generator: torch.Generator | None = None) -> list[int]:
    """One frame from each of ``num_segments`` equal segments of the video (TSN-style).

    Segment ``i`` spans ``[round(s * i), round(s * (i + 1))]`` with ``s = (video_frames - 1) / num_segments``
    (the segment bounds of PySlowFast's Something-Something loader). Training draws a frame uniformly inside
    each segment; testing takes the centre, or with ``num_clips > 1`` clip ``clip``'s evenly spaced offset
    ``(clip + 1) / (num_clips + 1)`` of the way through each segment (distinct views when segments are long
    enough). Short videos repeat frames; indices are non-decreasing.
    """
    if video_frames < 1:
        raise ValueError("video has no frames")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if not 0 <= clip < num_clips:
        raise ValueError(f"clip {clip} out of range for {num_clips} clips")
    size = (video_frames - 1) / num_segments
    out = []
    for i in range(num_segments):
        start, end = int(round(size * i)), int(round(size * (i + 1)))
        if train:
            out.append(int(torch.randint(start, end + 1, (1,), generator=generator).item()))
        elif num_clips == 1:
            out.append((start + end) // 2)
        else:
            out.append(start + ((end - start) * (clip + 1)) // (num_clips + 1))
    return out


def sample_clips(video_frames: int, num_frames: int, sampling_rate: int = 1, *, sampling: str = "dense",
                 train: bool, num_clips: int = 1, name: str = "", short_video: str = "pad") -> list[list[int]]:
    """Frame indices of each clip a sample yields: one in training, ``num_clips`` at test time.

    ``dense``: ``T x tau`` clips from a random start (train) or uniformly spaced starts (test);
    ``segment``: one frame from each of ``T`` segments (:func:`segment_indices`; ``sampling_rate`` unused).
    Past the end of a short video a dense clip repeats the last frame (``short_video="pad"``) or wraps
    (``"loop"``; :mod:`.short`). The one place where the file datasets, the built-in clips and the test-time
    views of ``predict`` / ``attention`` (:func:`vitkit.data.video.decode_clips`) choose frames; the views are
    then made by :func:`clips_to_views`.
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"data.sampling must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
    clips = 1 if train else num_clips
    if sampling == "segment":
        return [segment_indices(video_frames, num_frames, train=train, clip=c, num_clips=clips) for c in range(clips)]
    span = clip_span(num_frames, sampling_rate)
    if video_frames < span:
        log.debug("%s: %d frames, shorter than a clip of span %d; last frame repeated", name, video_frames, span)
    starts = [random_clip_start(video_frames, span)] if train else uniform_clip_starts(video_frames, span, clips, name)
    return [clip_indices_for(s, num_frames, sampling_rate, video_frames, short_video) for s in starts]


def clips_to_views(clips: Iterable[torch.Tensor], transform: Callable, num_crops: int = 1) -> list[torch.Tensor]:
    """Clips (T, C, H, W) -> the views of a sample, clip-major: each clip through ``transform`` ((C, T, H, W), or
    (num_crops, C, T, H, W) with several spatial crops, then one view per crop)."""
    views: list[torch.Tensor] = []
    for clip in clips:
        v = transform(clip)
        views.extend(v.unbind(0) if num_crops > 1 else [v])
    return views
