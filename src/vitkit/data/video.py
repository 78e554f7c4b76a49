"""PyAV video decoding that seeks to the sampled frames.

A video is first *indexed* by demuxing its packets (no decoding): the sorted
presentation timestamps give frame ``i``'s timestamp exactly, so frame indices
are right for variable frame rate and for streams whose first pts is not 0.
A clip is then decoded by seeking to the key frame before its first frame and
decoding only up to its last frame.
"""
from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

__all__ = ["VideoIndex", "VideoError", "index_video", "decode_frames", "decode_clips", "read_all_frames",
           "IndexCache"]


class VideoError(RuntimeError):
    """A video that cannot be used; the message is the reason shown to the user."""


@dataclass(frozen=True)
class VideoIndex:
    """Presentation timestamps of every frame of a file's first video stream."""

    path: str
    pts: tuple[int, ...]          # sorted, one per frame, in stream time_base units
    time_base: Fraction
    header_frames: int            # frame count the container header claims (0 = unknown)
    keyframes: tuple[int, ...] = ()  # indices of key frames (seek targets); empty = unknown

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def fps(self) -> float:
        """Mean frame rate from the timestamps."""
        if len(self.pts) < 2 or self.pts[-1] == self.pts[0]:
            return 0.0
        return float((len(self.pts) - 1) / ((self.pts[-1] - self.pts[0]) * self.time_base))

    @property
    def is_vfr(self) -> bool:
        """True when frame durations differ (variable frame rate)."""
        d = np.diff(np.asarray(self.pts, dtype=np.int64))
        return bool(d.size > 1 and (d.max() - d.min()) > max(1, 0.02 * d.mean()))

    def seconds(self, i: int) -> float:
        """Timestamp of frame ``i`` in seconds from the stream's first frame."""
        return float((self.pts[i] - self.pts[0]) * self.time_base)


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoError("missing file")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as e:
        raise VideoError(f"cannot open: {_reason(e)}") from e
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    return container


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return f"{type(e).__name__}: {msg}"


def index_video(path: str) -> VideoIndex:
    """Demux (without decoding) and return the frame timestamps; raises :class:`VideoError`."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        key_pts: set[int] = set()
        missing = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    missing += 1
                else:
                    pts.append(int(t))
                    if packet.is_keyframe:
                        key_pts.add(int(t))
        except av.FFmpegError as e:
            if not pts:
                raise VideoError(f"cannot demux: {_reason(e)}") from e
        if missing:
            raise VideoError(f"{missing} packets have no timestamp")
        if not pts:
            raise VideoError("no video frames")
        header = int(stream.frames or 0)
        if header > len(pts):  # e.g. an MP4 with its index first and its data cut off
            raise VideoError(f"truncated: header says {header} frames, {len(pts)} found")
        pts.sort()
        if not header:
            _check_duration(container, pts, Fraction(stream.time_base))
        keys = tuple(i for i, t in enumerate(pts) if t in key_pts)
        return VideoIndex(path, tuple(pts), Fraction(stream.time_base), header, keys)
    finally:
        container.close()


def _check_duration(container, pts: list[int], time_base: Fraction) -> None:
    """Containers without a frame count (WebM/Matroska) still record the duration in their header: frames that
    end well before it mean the file was cut short (more than 2 frames and 10% of the duration missing)."""
    if container.duration is None:
        return
    if len(pts) > 1:
        frame = float((pts[-1] - pts[0]) * time_base) / (len(pts) - 1)
    else:
        rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
        frame = 1 / float(rate) if rate else 0.0
    end = float(pts[-1] * time_base) + frame
    header_end = (container.duration + (container.start_time or 0)) / 1e6
    missing = header_end - end
    if missing > max(2 * frame, 0.1 * header_end):
        raise VideoError(f"truncated: header says {header_end:.2f} s, frames end at {end:.2f} s")


def _to_tensor(frames: list[av.VideoFrame]) -> torch.Tensor:
    arr = np.stack([f.to_ndarray(format="rgb24") for f in frames])  # T, H, W, 3
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()   # T, 3, H, W


def _seek_groups(index: VideoIndex, wanted: list[int]) -> list[list[int]]:
    """Split sorted frame indices where a key frame lies between two of them (a seek skips decoding)."""
    if not index.keyframes:
        return [wanted]
    groups = [[wanted[0]]]
    for w in wanted[1:]:
        k = index.keyframes[bisect.bisect_right(index.keyframes, w) - 1] if w >= index.keyframes[0] else 0
        if k > groups[-1][-1]:
            groups.append([w])
        else:
            groups[-1].append(w)
    return groups


def _decode_group(container, index: VideoIndex, wanted: list[int], got: dict) -> int:
    """Seek before ``wanted[0]`` and decode through ``wanted[-1]``; returns frames decoded."""
    stream = container.streams.video[0]
    want = set(wanted)
    decoded = 0
    for attempt in range(2):
        target = index.pts[wanted[0]] if attempt == 0 else index.pts[0]
        container.seek(target, stream=stream, backward=True, any_frame=False)
        first = True
        overshoot = False
        try:
            for frame in container.decode(stream):
                decoded += 1
                t = frame.pts
                if t is None:
                    continue
                i = bisect.bisect_left(index.pts, t)
                if i == len(index.pts) or (i > 0 and index.pts[i] != t and t - index.pts[i - 1] < index.pts[i] - t):
                    i -= 1
                if first and attempt == 0 and i > wanted[0]:
                    overshoot = True  # the seek landed after the first wanted frame: retry from the start
                    break
                first = False
                if i in want and i not in got:
                    got[i] = frame
                if i >= wanted[-1]:
                    break
        except av.FFmpegError as e:
            raise VideoError(f"decode error after {decoded} frames: {_reason(e)}") from e
        if not overshoot:
            break
    return decoded


def decode_frames(index: VideoIndex, indices: list[int], container=None) -> tuple[torch.Tensor, int]:
    """Decode the frames at ``indices`` (any order, repeats allowed), seeking to each run of them.

    Frames between two wanted ones are decoded only when no key frame lies between them
    (several clips of one video share a pass when they are close, and seek when far apart).
    Returns ``(frames uint8 (len(indices), 3, H, W), number of frames decoded)``.
    Raises :class:`VideoError` when a wanted frame cannot be decoded (e.g. truncated data).
    """
    bad = [i for i in indices if not 0 <= i < index.num_frames]
    if bad:
        raise ValueError(f"frame indices {bad[:4]} outside [0, {index.num_frames})")
    own = container is None
    container = _open(index.path) if own else container
    try:
        got: dict[int, av.VideoFrame] = {}
        decoded = 0
        wanted = sorted(set(indices))
        for group in _seek_groups(index, wanted):
            decoded += _decode_group(container, index, group, got)
        lost = [i for i in wanted if i not in got]
        if lost:
            raise VideoError(f"truncated or undecodable: frames {lost[:4]}{'...' if len(lost) > 4 else ''} "
                             f"of {index.num_frames} could not be decoded")
        rgb = {i: f.to_ndarray(format="rgb24") for i, f in got.items()}
        arr = np.stack([rgb[i] for i in indices])  # T, H, W, 3 (repeated indices converted once)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), decoded
    finally:
        if own:
            container.close()


def decode_clips(path: str, num_frames: int, sampling_rate: int = 1, num_clips: int = 1) -> list[torch.Tensor]:
    """The test-time views of a video file: ``num_clips`` uniformly spaced clips (the centre one when 1) of
    ``num_frames`` frames ``sampling_rate`` apart, decoding only those frames; uint8 ``(T, 3, H, W)`` each."""
    from .sampling import sample_clips

    index = index_video(path)
    clips = sample_clips(index.num_frames, num_frames, sampling_rate, train=False, num_clips=num_clips, name=path)
    wanted = [i for clip in clips for i in clip]
    frames, _ = decode_frames(index, wanted)  # all clips in one call: one pass when they are close
    return list(frames.split(num_frames))


def read_all_frames(path: str) -> torch.Tensor:
    """Decode every frame in order (the whole-video baseline); uint8 (N, 3, H, W)."""
    container = _open(path)
    try:
        frames = list(container.decode(container.streams.video[0]))
    except av.FFmpegError as e:
        raise VideoError(f"decode error: {_reason(e)}") from e
    finally:
        container.close()
    if not frames:
        raise VideoError("no video frames")
    return _to_tensor(frames)


class IndexCache:
    """Per-process LRU cache of :class:`VideoIndex` (demuxing once per file and worker)."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[str, VideoIndex] = OrderedDict()

    def get(self, path: str) -> VideoIndex:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        idx = index_video(path)
        self._items[path] = idx
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return idx
