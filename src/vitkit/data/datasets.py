"""Datasets of image and video files that survive bad samples.

A sample that is missing, empty, truncated or undecodable is reported once
(path and reason, ``logging`` warning on ``vitkit.data``) and replaced by
another sample chosen deterministically from the index; ``bad_samples()``
returns every bad path with its reason, including those found inside
DataLoader workers (see :mod:`vitkit.data.badlog`). A dataset in which no
sample can be read fails at construction with the reasons.

Only reading and decoding can make a sample bad. A transform that fails on a
decoded sample raises :class:`~vitkit.data.transforms.TransformError` at once
(a configuration error naming the recipe key), at construction or at the first
item, and is never counted as bad data.
"""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .badlog import BadSampleLog, SampleNotes
from .decoders import build_reader
from .frames import FrameFolderReader
from .large import is_large, note_large
from .pil_modes import to_uint8
from .sampling import SAMPLING_MODES, clip_span, clips_to_views, sample_clips
from .short import SHORT_VIDEO, ShortVideoError, short_note
from .sources import SampleList
from .transforms import TransformError
from .video import VideoError

log = logging.getLogger("vitkit.data")

__all__ = ["FileDataset", "load_image", "multi_hot", "MAX_REPLACEMENT_TRIES"]

MAX_REPLACEMENT_TRIES = 50


def readable_files(
    files: Iterable[str], load: Callable[[str], Any], failed: list[str]
) -> Iterator[tuple[int, str, Any]]:
    """``(position, file, load(file))`` for each file that loads (position counts every file from 0); a file that
    does not is reported in one line (``FILE: cannot read (Error: ...)``), appended to ``failed`` and skipped, so
    one bad file never stops the others (what ``vitkit predict`` does for every task)."""
    for i, f in enumerate(files):
        try:
            item = load(f)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            print(f"{f}: cannot read ({type(e).__name__}: {e})")
            failed.append(f)
            continue
        yield i, f, item


def load_image(path: str, channels: int = 3, min_side: int | None = None) -> torch.Tensor:
    """Fully decode an image file to uint8 ``(C, H, W)``; raises ``OSError``/``ValueError`` if unreadable.

    Every PIL mode is scaled to 8 bits by its meaning (:mod:`vitkit.data.pil_modes`). Images above
    :data:`~vitkit.data.large.LARGE_PIXELS` are reported once (:mod:`vitkit.data.large`) and, given ``min_side``,
    decoded at reduced size where the format allows (JPEG: 1/2, 1/4, 1/8) with the shorter side >= ``min_side``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError("missing file")
    if os.path.getsize(path) == 0:
        raise ValueError("empty file (0 bytes)")
    with Image.open(path) as img:
        note_large(path, img, min_side)
        if min_side and is_large(img):
            img.draft("L" if channels == 1 else "RGB", (min_side, min_side))
        img.load()  # a full decode: truncation raises here
        img = to_uint8(img, channels)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def multi_hot(labels, num_classes: int) -> torch.Tensor:
    """Float ``(num_classes,)`` with ones at ``labels`` (an int or a collection of ints)."""
    out = torch.zeros(num_classes)
    out[list(labels) if isinstance(labels, (tuple, list, set, frozenset)) else [int(labels)]] = 1.0
    return out


def _reason(e: BaseException) -> str:
    if isinstance(e, (VideoError, ShortVideoError)):
        return str(e)
    if isinstance(e, FileNotFoundError):
        return "missing file"
    msg = str(e) or type(e).__name__
    return msg if isinstance(e, ValueError) and "empty file" in msg else f"{type(e).__name__}: {msg}"


class FileDataset(torch.utils.data.Dataset):
    """Images or clips from files, with transforms, multi-view test items and bad-sample replacement.

    Items: ``(x, label)``; at test time with more than one view,
    ``(views (V, C, [T,] H, W), label, sample_index)`` where ``sample_index`` is
    the index actually loaded (a replaced bad sample yields its replacement's
    index, so per-video averaging never mixes two videos).

    Video samples are files read by ``decoder`` (:mod:`.decoders`) or folders of frames (:mod:`.frames`);
    ``sampling`` is ``'dense'`` (``T x tau`` clips) or ``'segment'`` (one frame from each of ``T`` segments).
    A multi-label source (``source.multi_label``) gives float multi-hot labels of ``num_classes``.
    """

    def __init__(self, source: SampleList, transform: Callable, *, video: bool, train: bool,
                 num_frames: int = 1, sampling_rate: int = 1, num_clips: int = 1, num_crops: int = 1,
                 channels: int = 3, name: str | None = None, sampling: str = "dense", decoder: str = "pyav",
                 min_side: int | None = None, short_video: str = "pad"):
        self.samples = list(source.samples)
        self.classes = list(source.classes)
        self.transform = transform
        self.video, self.train = video, train
        self.num_frames, self.sampling_rate = num_frames, sampling_rate
        self.num_clips = num_clips if (video and not train) else 1
        self.num_crops = num_crops if not train else 1
        self.channels = channels
        self.min_side = min_side  # large images decode at reduced size down to this shorter side
        self.name = name or source.origin
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"data.sampling must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
        self.sampling = sampling
        self.multi_label = bool(source.multi_label)
        self._reader = build_reader(decoder) if video else None
        self._frames = FrameFolderReader(source.frame_counts)
        self.origin = source.origin  # the list file or folder the samples came from
        self._bad = BadSampleLog(self.name)
        if short_video not in SHORT_VIDEO:
            raise ValueError(f"short_video must be one of {', '.join(SHORT_VIDEO)}, got {short_video!r}")
        self.short_video = short_video
        self._notes = SampleNotes(self.name)  # usable but worth telling: short videos, images given as videos
        for path, reason in source.rejected.items():
            self._bad.report(path, reason, action="entry skipped", unusable=False)
        if not self.samples:
            raise RuntimeError(f"dataset {self.name!r}: no usable samples"
                               + (f" ({len(source.rejected)} rejected, e.g. {next(iter(source.rejected.items()))})"
                                  if source.rejected else " (no files found with the expected extensions)"))
        self._check_readable()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.samples)

    def bad_samples(self) -> dict[str, str]:
        """``{path: reason}`` for every bad sample found so far, by this process or its workers."""
        return self._bad.items()

    def sample_notes(self) -> dict[str, str]:
        """``{path: note}`` for usable samples the user should know about (short videos, images as videos)."""
        return self._notes.items()

    def _check_readable(self) -> None:
        """Stat every file; then decode samples in order until one works, else fail with reasons."""
        for path, _ in self.samples:
            try:
                if os.path.getsize(path) == 0:
                    self._bad.report(path, "empty file (0 bytes)")
            except OSError:
                self._bad.report(path, "missing file")
        for j, (path, _) in enumerate(self.samples):
            if path in self._bad:
                continue
            try:
                raw = self._decode(j)
            except Exception as e:  # noqa: BLE001 - any decoder failure makes the sample bad
                self._bad.report(path, _reason(e))
                continue
            self._transform(raw)  # a failure here is the configuration's: TransformError propagates
            return
        bad = self.bad_samples()
        examples = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:3])
        raise RuntimeError(f"dataset {self.name!r}: none of its {len(self.samples)} samples can be read "
                           f"(e.g. {examples}). Run `vitkit data check {self.name}` for a full report.")

    def _decode(self, j: int) -> torch.Tensor:
        """Read and decode sample ``j``: uint8 image ``(C, H, W)``, or the wanted clips' frames ``(N*T, C, H, W)``."""
        path, _ = self.samples[j]
        if not self.video:
            return load_image(path, self.channels, self.min_side)
        reader = self._frames if os.path.isdir(path) else self._reader
        n = reader.num_frames(path)
        if self.sampling != "segment":
            note = short_note(n, clip_span(self.num_frames, self.sampling_rate), self.short_video)
            if note is not None:  # shown in the epoch report (data.short_video: pad | loop | skip)
                if self.short_video == "skip":
                    raise ShortVideoError(note)
                self._notes.report(path, note, action="")
        clips = sample_clips(n, self.num_frames, self.sampling_rate, sampling=self.sampling, train=self.train,
                             num_clips=self.num_clips, name=path, short_video=self.short_video)
        wanted = [i for clip in clips for i in clip]
        return reader.read(path, wanted)  # all clips in one call: one pass when they are close

    def _transform(self, raw: torch.Tensor):
        """Decoded sample -> the item's tensor(s); raises :class:`TransformError` (never a bad-sample reason)."""
        try:
            if not self.video:
                return self.transform(raw)
            views = clips_to_views(raw.split(self.num_frames), self.transform, self.num_crops)
            return views[0] if len(views) == 1 else torch.stack(views)
        except TransformError:
            raise
        except Exception as e:  # noqa: BLE001 - a custom transform: still the configuration's, not the data's
            raise TransformError(f"transform {type(self.transform).__name__} failed on a decoded sample of "
                                 f"{self.name!r}: {type(e).__name__}: {' '.join(str(e).split())}. This is a "
                                 "configuration error, not bad data: check the data.augment keys") from e

    def _replacement(self, i: int, attempt: int) -> int:
        return random.Random(i * 1_000_003 + attempt).randrange(len(self.samples))

    def __getitem__(self, i: int):
        j = i
        for attempt in range(MAX_REPLACEMENT_TRIES):
            if attempt:
                j = self._replacement(i, attempt)
            path, label = self.samples[j]
            if path in self._bad:
                continue
            try:
                raw = self._decode(j)
            except Exception as e:  # noqa: BLE001 - unreadable or undecodable: a bad sample
                self._bad.report(path, _reason(e))
                continue
            x = self._transform(raw)
            if self.multi_label:
                label = multi_hot(label, self.num_classes)
            if not self.train and self.num_views > 1:
                return x, label, j
            return x, label
        raise RuntimeError(f"dataset {self.name!r}: no readable sample found after {MAX_REPLACEMENT_TRIES} "
                           f"replacements of item {i}; {len(self.bad_samples())} bad samples so far")
