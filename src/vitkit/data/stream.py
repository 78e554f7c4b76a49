"""Sliding clips over a whole video in one sequential decoding pass, with memory bounded by one clip's span.

Window ``k`` starts at frame ``k * stride`` and takes the ``T`` frames ``start + i * tau`` (the ``T x tau``
sampling of :mod:`.sampling`); the last window is aligned to the end of the video so every frame is covered,
and a video shorter than one span gives one window whose last frame repeats. Frames are decoded once, in order,
and only the last ``span = (T - 1) * tau + 1`` of them are held (each already reduced by ``prepare``, e.g. resized
to the model's test size), so an hour of video needs no more memory than a minute: ``WindowStream.max_held``
records the most frames held at once.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import av
import numpy as np
import torch

from .sampling import clip_span
from .video import VideoError

__all__ = ["Window", "WindowStream"]


@dataclass
class Window:
    index: int
    frames: list[int]        # source frame indices (T of them)
    start_s: float           # time of the first and last sampled frame, seconds from the first frame
    end_s: float
    clip: torch.Tensor       # uint8 (T, 3, H, W), after ``prepare``


class WindowStream:
    """Iterate :class:`Window` s of ``num_frames x sampling_rate`` clips every ``stride`` frames of ``path``."""

    def __init__(self, path: str, num_frames: int, sampling_rate: int = 1, stride: int | None = None,
                 prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if not os.path.isfile(path):
            raise VideoError("missing file")
        self.path, self.t, self.tau = path, num_frames, sampling_rate
        self.span = clip_span(num_frames, sampling_rate)
        self.stride = stride or self.span
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 frame, got {self.stride}")
        self.prepare = prepare or (lambda x: x)
        self.max_held = 0
        self.frames_decoded = 0
        with av.open(path, metadata_errors="ignore") as c:
            if not c.streams.video:
                raise VideoError("no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            self.fps = float(rate) if rate else 0.0
            n = int(s.frames or 0)
            if not n and c.duration and self.fps:
                n = int(round(c.duration / 1e6 * self.fps))
            self.estimated_frames = n  # for progress bars; 0 when unknown

    def _window(self, k: int, start: int, held: deque, times: dict) -> Window:
        last = held[-1][0]
        idx = [min(start + i * self.tau, last) for i in range(self.t)]
        by_index = {i: f for i, f in held}
        clip = torch.stack([by_index[i] for i in idx])
        return Window(k, idx, times[idx[0]], times[idx[-1]], clip)

    def __iter__(self) -> Iterator[Window]:
        held: deque = deque()        # (index, frame) of the last ``span`` frames
        times: dict[int, float] = {}
        k, start, t0 = 0, 0, None
        try:
            container = av.open(self.path, metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoError(f"cannot open: {type(e).__name__}: {e}") from e
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else i / (self.fps or 1.0)
                t0 = t if t0 is None else t0
                arr = frame.to_ndarray(format="rgb24")
                held.append((i, self.prepare(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))))
                times[i] = t - t0
                while len(held) > self.span:
                    times.pop(held.popleft()[0], None)
                self.max_held = max(self.max_held, len(held))
                self.frames_decoded = i + 1
                if i == start + self.span - 1:
                    yield self._window(k, start, held, times)
                    k, start = k + 1, start + self.stride
        except av.FFmpegError as e:
            if not held:
                raise VideoError(f"decode error: {type(e).__name__}: {e}") from e
        finally:
            container.close()
        if not held:
            raise VideoError("no video frames")
        last = held[-1][0]
        if k == 0 or start - self.stride + self.span - 1 < last:  # cover the tail (or a video shorter than a span)
            yield self._window(k, max(last - self.span + 1, 0), held, times)
