"""Built-in data that needs no download: ``digits`` and ``motion-digits``.

``digits``: scikit-learn's 1,797 real 8x8 handwritten digits, upscaled
(bilinear) to 32x32 with 3 identical channels, and a fixed stratified 80/20
split (``train_test_split(..., test_size=0.2, stratify=y, random_state=0)``:
1,437 train / 360 test; ``val`` and ``test`` are the same held-out part).

``motion-digits``: 8-frame 32x32 clips of a real digit sprite (12x12) moving
on a noisy background; the class is the motion (0 right, 1 left, 2 down, 3 up,
4 down-right, 5 up-left, 6 down-left, 7 up-right, 8 clockwise arc,
9 counter-clockwise arc), never the digit, so frame order matters: reversing a
clip turns "right" into "left". Clip ``i`` is generated from a seed fixed by
split and ``i``; train (2,000) uses sprites of digits' train part, test (500)
of its test part. Both are held in memory as uint8 tensors.

``motion-digits-lr``: the direction-sensitive variant in Something-Something's
style - the 8 straight motions only, named ``moving right``, ``moving left`` ...
``moving up-right``. A horizontal flip turns each left/right class into its
mirror (``moving right`` <-> ``moving left``, ``moving up-left`` <-> ``moving
up-right``) and keeps ``moving up``/``moving down``: training with plain flips
mislabels the flipped clips, training without flips (the SSv2 recipes) or with
the left/right label swap (``augment.flip_label_map: left-right``) does not.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .sampling import clips_to_views, sample_clips

__all__ = ["load_digits_split", "motion_digits_split", "MOTIONS", "MOTIONS_LR", "BuiltinDataset"]

MOTIONS = ("right", "left", "down", "up", "down-right", "up-left", "down-left", "up-right",
           "clockwise", "counter-clockwise")
MOTIONS_LR = tuple(f"moving {m}" for m in MOTIONS[:8])
_DIRS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (-1, 1), (1, -1)]
DIGIT_CLASSES = [str(i) for i in range(10)]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
    return d.images.astype(np.float32), d.target.astype(np.int64), np.sort(tr), np.sort(te)


def _upscale(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, 8, 8) in [0, 16] -> uint8 (N, size, size)."""
    x = torch.from_numpy(images)[:, None] * (255.0 / 16.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)[:, 0]


def load_digits_split(split: str, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, size, size) and int64 labels of the fixed split."""
    images, target, tr, te = _digits()
    idx = tr if split == "train" else te
    x = _upscale(images[idx], size)[:, None].expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(target[idx])


def _trajectory(motion: int, rng: np.random.Generator, frames: int, room: int) -> np.ndarray:
    """(frames, 2) top-left (x, y) positions in [0, room] for ``motion``."""
    u = np.linspace(0.0, 1.0, frames)
    if motion < 8:
        dx, dy = _DIRS[motion]
        travel = rng.uniform(0.6, 0.9) * room * (0.8 if dx and dy else 1.0)
        tx, ty = dx * travel, dy * travel
        x0 = rng.uniform(max(0, -tx), room - max(0, tx))
        y0 = rng.uniform(max(0, -ty), room - max(0, ty))
        return np.stack([x0 + u * tx, y0 + u * ty], 1)
    r = rng.uniform(0.25, 0.4) * room
    cx, cy = rng.uniform(r, room - r, size=2)
    a0 = rng.uniform(0, 2 * math.pi)
    sign = 1.0 if motion == 8 else -1.0   # image y points down: increasing angle turns clockwise
    a = a0 + sign * u * 1.5 * math.pi
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _render(sprite: np.ndarray, motion: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    s = sprite.shape[0]
    pos = np.rint(_trajectory(motion, rng, frames, size - s)).astype(int)
    clip = rng.normal(0, 10, size=(frames, size, size)).clip(0, 255)
    gain = rng.uniform(0.7, 1.0)
    for t, (x, y) in enumerate(pos):
        patch = clip[t, y:y + s, x:x + s]
        np.maximum(patch, sprite * gain, out=patch)
    return clip.round().astype(np.uint8)


def motion_digits_split(split: str, frames: int = 8, size: int = 32,
                        motions: int = len(MOTIONS)) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips (N, frames, 1, size, size) and motion labels (the first ``motions`` of :data:`MOTIONS`);
    deterministic per (split, index)."""
    images, _, tr, te = _digits()
    train = split == "train"
    pool = _upscale(images[tr if train else te], 12).numpy().astype(np.float32)
    n = 2000 if train else 500
    clips = np.empty((n, frames, 1, size, size), np.uint8)
    labels = np.arange(n) % motions
    for i in range(n):
        rng = np.random.default_rng([0 if train else 1, i])
        sprite = pool[rng.integers(len(pool))]
        clips[i, :, 0] = _render(sprite, int(labels[i]), rng, frames, size)
    return torch.from_numpy(clips), torch.from_numpy(labels.astype(np.int64))


class BuiltinDataset(torch.utils.data.Dataset):
    """In-memory uint8 images (N, C, H, W) or clips (N, T, C, H, W) with the shared transforms.

    With no augmentation, the native size and one view, items skip the transform
    pipeline and are only scaled and normalised (fast path).
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, classes: list[str], transform, *,
                 fast: bool, mean, std, train: bool, channels: int = 3, num_frames: int | None = None,
                 sampling_rate: int = 1, num_clips: int = 1, num_crops: int = 1, name: str = "",
                 sampling: str = "dense"):
        self.data, self.labels, self.classes = data, labels, list(classes)
        self.transform, self.fast, self.train = transform, fast, train
        self.video = data.ndim == 5
        self.channels = channels
        self.num_frames = num_frames or (data.shape[1] if self.video else 1)
        self.sampling_rate, self.sampling = sampling_rate, sampling
        self.num_clips = num_clips if (self.video and not train) else 1
        self.num_crops = num_crops if not train else 1
        self.name = name
        shape = (-1, 1, 1, 1) if self.video else (-1, 1, 1)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(shape)
        self._std = torch.tensor(std, dtype=torch.float32).view(shape)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.labels)

    def bad_samples(self) -> dict[str, str]:
        """Always empty: built-in data is generated in memory."""
        return {}

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        cdim = -3
        if x.shape[cdim] == self.channels:
            return x
        if x.shape[cdim] == 1:
            return x.expand(*x.shape[:cdim], self.channels, *x.shape[cdim + 1:])
        return x[..., :1, :, :] if self.channels == 1 else x

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        x = self._channels(x)
        if self.fast:
            if self.video:
                x = x.transpose(0, 1)  # T,C,H,W -> C,T,H,W
            return (x.float() / 255.0 - self._mean) / self._std
        return self.transform(x.contiguous())

    def __getitem__(self, i: int):
        x, label = self.data[i], int(self.labels[i])
        if not self.video:
            out = self._view(x)
        else:
            clips = sample_clips(x.shape[0], self.num_frames, self.sampling_rate, sampling=self.sampling,
                                 train=self.train, num_clips=self.num_clips, name=f"{self.name}[{i}]")
            views = clips_to_views((x[idx] for idx in clips), self._view, 1 if self.fast else self.num_crops)
            out = views[0] if len(views) == 1 else torch.stack(views)
        if not self.train and self.num_views > 1:
            if not self.video and self.num_crops > 1 and out.ndim == 3:
                out = out[None]
            return out, label, i
        return out, label
