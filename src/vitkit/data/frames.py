"""Datasets stored as extracted frames: ``video_dir/img_00001.jpg ...`` and ``dir num_frames label`` lists.

The list format is mmaction2's *rawframes* annotation: one video per line, ``frame_dir total_frames label``
(whitespace separated; several labels for a multi-label set), ``frame_dir`` relative to ``root`` or to the list's
folder. Frame ``i`` of a folder is the file named by the template with number ``start + i``; the default is
mmaction2's ``img_{:05d}.jpg`` from 1 (its ``filename_tmpl`` / ``start_index``), and a folder that does not use it
has its template read from its own file names (``frame_000000.png`` ...: prefix, digit count and first number).
Sampling and transforms are the encoded-video ones: a folder is one more :class:`~.decoders.ClipReader`.

Corrupt entries are counted skips: a folder whose first or last listed frame is missing, a frame missing when
it is read, an unreadable image, an entry with no label.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .sources import SampleList
from .video import VideoError

__all__ = ["FrameFolderReader", "read_rawframe_list", "looks_like_rawframe_list", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = ("img_{:05d}.jpg", 1)
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.(?:jpg|jpeg|png|bmp|webp))$", re.IGNORECASE)


def _infer_template(directory: str) -> tuple[str, int, int]:
    """(template, first number, frame count) from a folder's numbered image files."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise VideoError("missing frame folder" if isinstance(e, FileNotFoundError) else f"cannot list: {e}") from e
    groups: dict[tuple[str, int, str], list[int]] = {}
    for n in names:
        m = _NUMBERED.match(n)
        if m:
            prefix, digits, ext = m.groups()
            groups.setdefault((prefix, len(digits), ext), []).append(int(digits))
    if not groups:
        raise VideoError("no numbered frame images in the folder (expected e.g. img_00001.jpg)")
    (prefix, width, ext), nums = max(groups.items(), key=lambda kv: len(kv[1]))
    first = min(nums)
    return f"{prefix}{{:0{width}d}}{ext}", first, max(nums) - first + 1


class FrameFolderReader:
    """Reads frames ``indices`` of a folder of images; ``counts`` are the frame totals the list gives."""

    name = "frames"

    def __init__(self, counts: dict[str, int] | None = None, cache_size: int = 4096) -> None:
        self.counts = dict(counts or {})
        self._layout: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        self._size = cache_size

    def layout(self, directory: str) -> tuple[str, int, int]:
        """``(template, first number, frames)`` of a folder, checked once per process."""
        if directory in self._layout:
            return self._layout[directory]
        if not os.path.isdir(directory):
            raise VideoError("missing frame folder")
        tmpl, start = DEFAULT_TEMPLATE
        n = self.counts.get(directory)
        if not os.path.exists(os.path.join(directory, tmpl.format(start))):
            tmpl, start, found = _infer_template(directory)
            n = n if n is not None else found
        elif n is None:
            _, _, n = _infer_template(directory)
        if n < 1:
            raise VideoError(f"the list gives {n} frames")
        last = os.path.join(directory, tmpl.format(start + n - 1))
        if not os.path.exists(last):
            raise VideoError(f"missing frames: {os.path.basename(last)} (frame {n} of {n} listed) not found")
        self._layout[directory] = (tmpl, start, n)
        if len(self._layout) > self._size:
            self._layout.popitem(last=False)
        return tmpl, start, n

    def num_frames(self, directory: str) -> int:
        return self.layout(directory)[2]

    def read(self, directory: str, indices: Sequence[int]) -> torch.Tensor:
        tmpl, start, n = self.layout(directory)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"frame indices {bad[:4]} outside [0, {n}) of {directory}")
        got: dict[int, np.ndarray] = {}
        for i in sorted(set(int(i) for i in indices)):
            path = os.path.join(directory, tmpl.format(start + i))
            try:
                with Image.open(path) as img:
                    got[i] = np.asarray(img.convert("RGB"))
            except FileNotFoundError:
                raise VideoError(f"missing frame {os.path.basename(path)} (frame {i + 1} of {n})") from None
            except (OSError, ValueError) as e:
                raise VideoError(f"unreadable frame {os.path.basename(path)}: {type(e).__name__}: {e}") from e
        shapes = {a.shape for a in got.values()}
        if len(shapes) > 1:
            raise VideoError(f"frames of different sizes {sorted(shapes)[:2]}")
        arr = np.stack([got[int(i)] for i in indices])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _data_lines(path: str):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if s and not s.startswith("#"):
                yield lineno, s


def looks_like_rawframe_list(path: str, root: str | None = None) -> bool:
    """True when the first entry of a list file reads ``frame_dir total_frames label`` with an existing folder."""
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    for _, s in _data_lines(path):
        parts = s.split()
        if len(parts) < 3 or not parts[1].isdigit():
            return False
        d = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
        return os.path.isdir(d)
    return False


def read_rawframe_list(path: str, root: str | None = None, classes: list[str] | None = None,
                       num_classes: int | None = None, multi_label: bool | None = None) -> SampleList:
    """Parse an mmaction2 rawframes list; several labels on a line (or ``multi_label``) make a multi-label set."""
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    name_to_idx = {c: i for i, c in enumerate(classes)} if classes else {}
    rows: list[tuple[str, int, list[int]]] = []
    rejected: dict[str, str] = {}
    for lineno, s in _data_lines(path):
        parts = s.split()
        if len(parts) < 2 or not parts[1].isdigit():
            rejected[f"{path}:{lineno}"] = f"cannot parse line {s!r}: expected 'frame_dir total_frames label'"
            continue
        d = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
        if len(parts) == 2:
            rejected[d] = "empty label set"
            continue
        try:
            labels = [int(v) if v.lstrip("-").isdigit() else name_to_idx[v] for v in parts[2:]]
        except KeyError as e:
            rejected[d] = f"label {e.args[0]!r} is neither an integer nor a known class name"
            continue
        rows.append((d, int(parts[1]), labels))
    multi = multi_label if multi_label is not None else any(len(lab) > 1 for _, _, lab in rows)
    n = num_classes or (len(classes) if classes else None)
    if n is None:
        n = max((max(lab) for _, _, lab in rows), default=-1) + 1
    samples, counts = [], {}
    for d, count, labels in rows:
        out = [lab for lab in labels if not 0 <= lab < n]
        if out:
            rejected[d] = f"label {out[0]} out of range [0, {n})"
            continue
        if not multi and len(labels) > 1:
            rejected[d] = f"{len(labels)} labels for a single-label dataset"
            continue
        samples.append((d, tuple(sorted(set(labels))) if multi else labels[0]))
        counts[d] = count
    names = list(classes) if classes else [str(i) for i in range(n)]
    return SampleList(samples, names, rejected, origin=path, multi_label=multi, frame_counts=counts)
