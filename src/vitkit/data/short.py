"""Videos shorter than a clip, and images given as videos: what to do (``data.short_video``) and the notes saying so.

A clip of ``T x tau`` covers ``(T - 1) * tau + 1`` frames. A shorter video is

- ``pad`` (default, PySlowFast's behaviour): the indices past the end repeat the last frame;
- ``loop``: the indices wrap around to the start (``i mod n``), so motion continues;
- ``skip``: the video is a bad sample, replaced like an unreadable one.

A one-frame "video" (an image file in a video list, decoded by FFmpeg's image demuxers) is the extreme case: every
policy but ``skip`` trains on a static clip. Either way the dataset records a note per file, shown in the epoch
report and by ``vitkit data check``, instead of a debug message nobody sees.
"""
from __future__ import annotations

__all__ = ["SHORT_VIDEO", "ShortVideoError", "short_note", "clip_indices_for"]

SHORT_VIDEO = ("pad", "loop", "skip")


class ShortVideoError(ValueError):
    """A video shorter than a clip under ``data.short_video=skip`` (a bad sample, replaced)."""


def short_note(num_frames: int, span: int, policy: str | None = None) -> str | None:
    """One line for a video of ``num_frames`` against a clip ``span``; None when it is long enough."""
    if num_frames >= span:
        return None
    what = ("1 frame: an image given as a video" if num_frames == 1
            else f"short: {num_frames} frames < clip span {span}")
    action = {"pad": "last frame repeated", "loop": "frames looped", "skip": "skipped"}.get(policy or "")
    return what + (f" ({action}, data.short_video={policy})" if action else "")


def clip_indices_for(start: int, num_frames: int, sampling_rate: int, video_frames: int, policy: str) -> list[int]:
    """Frame indices of a clip from ``start``: past the end, the last frame (``pad``) or wrapped (``loop``)."""
    if video_frames < 1:
        raise ValueError("video has no frames")
    idx = [start + i * sampling_rate for i in range(num_frames)]
    if policy == "loop":
        return [i % video_frames for i in idx]
    return [min(i, video_frames - 1) for i in idx]
