"""``digit-scenes``: built-in dense data made from scikit-learn's real handwritten digits.

Each scene is a ``size`` x ``size`` RGB canvas (a smooth random background gradient with noise) on which 1 to
``max_digits`` digits of the fixed digits split (train scenes use train digits, test scenes test digits) are pasted
at random positions and scales (12 to 28 pixels for a 64 canvas), each in a random colour; later digits occlude
earlier ones. Per scene it gives:

- ``mask`` (H, W) int64: the semantic label map, 0 = background, 1 + d for digit d (11 classes);
- ``boxes`` (N, 4) float ``x1, y1, x2, y2`` (pixel edges), ``labels`` (N,) (1 + digit), ``instance_masks`` (N, H, W)
  bool - the visible stroke pixels of each digit;
- ``keypoints`` (N, 5, 3) ``x, y, visible``: the top-, bottom-, left- and right-most stroke pixels and the stroke
  centroid of each digit (visible = 0 where that pixel is occluded by a later digit); where several pixels share the
  extreme row (column), the median of them, so a mirrored digit's points are the mirrored points
  (:func:`stroke_keypoints`).

A stroke pixel is one whose upscaled digit intensity exceeds half its maximum. The split is fixed: scene ``i`` of
split ``s`` is drawn from a generator seeded with ``(s, i)``, so every process and run sees the same scenes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .builtin import DIGIT_CLASSES, _digits

CLASSES = ["background"] + [f"digit {d}" for d in DIGIT_CLASSES]
KEYPOINTS = ["top", "bottom", "left", "right", "centre"]
SIZES = {"train": 1000, "test": 200}
_SEEDS = {"train": 1, "test": 2}


@dataclass
class Scene:
    image: torch.Tensor  # (3, H, W) uint8
    mask: torch.Tensor  # (H, W) int64
    boxes: torch.Tensor  # (N, 4) float32
    labels: torch.Tensor  # (N,) int64
    instance_masks: torch.Tensor  # (N, H, W) bool
    keypoints: torch.Tensor  # (N, 5, 3) float32


@lru_cache(maxsize=2)
def _split_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, target, tr, te = _digits()
    idx = tr if split == "train" else te
    return images[idx] / 16.0, target[idx]


def stroke_keypoints(stroke: np.ndarray) -> list[tuple[float, float]]:
    """Top, bottom, left, right and centre (x, y) of a boolean stroke mask: the extreme rows and columns at the
    median of their stroke pixels (ties broken the same way under a flip), and the centroid."""
    ys, xs = np.nonzero(stroke)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    return [(float(np.median(xs[ys == top])), float(top)), (float(np.median(xs[ys == bottom])), float(bottom)),
            (float(left), float(np.median(ys[xs == left]))), (float(right), float(np.median(ys[xs == right]))),
            (float(xs.mean()), float(ys.mean()))]


def make_scene(split: str, index: int, size: int = 64, max_digits: int = 4) -> Scene:
    """Scene ``index`` of ``split`` (deterministic)."""
    if split not in _SEEDS:
        raise ValueError(f"digit-scenes split must be 'train' or 'test', got {split!r}")
    digits, target = _split_digits(split)
    rng = np.random.default_rng([_SEEDS[split], index, size])
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(0, 110, 3), rng.uniform(0, 110, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0
    image = c0[:, None, None] * (1 - t) + c1[:, None, None] * t + rng.normal(0, 6, (3, size, size))
    owner = np.full((size, size), -1, dtype=np.int64)  # which instance is visible at each pixel
    strokes, labels = [], []
    lo, hi = max(6, size * 3 // 16), max(8, size * 7 // 16)
    for k in range(int(rng.integers(1, max_digits + 1))):
        j = int(rng.integers(len(target)))
        s = int(rng.integers(lo, hi + 1))
        glyph = F.interpolate(torch.from_numpy(digits[j]).float()[None, None], size=(s, s), mode="bilinear",
                              align_corners=False)[0, 0].clamp(0, 1).numpy()
        y0, x0 = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
        stroke = np.zeros((size, size), dtype=bool)
        stroke[y0:y0 + s, x0:x0 + s] = glyph > 0.5 * max(glyph.max(), 1e-6)
        colour = rng.uniform(150, 255, 3)
        alpha = np.zeros((size, size))
        alpha[y0:y0 + s, x0:x0 + s] = glyph
        image = image * (1 - alpha) + colour[:, None, None] * alpha
        owner[stroke] = k
        strokes.append(stroke)
        labels.append(1 + int(target[j]))
    mask = np.zeros((size, size), dtype=np.int64)
    boxes, inst, kps, keep = [], [], [], []
    for k, (stroke, label) in enumerate(zip(strokes, labels)):
        visible = owner == k
        mask[visible] = label
        if not visible.any():
            continue  # fully covered by later digits
        ys, xs = np.nonzero(stroke)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        pts = stroke_keypoints(stroke)
        kps.append([[x, y, float(visible[int(y), int(x)])] for x, y in pts])
        inst.append(visible)
        keep.append(label)
    n = len(keep)
    return Scene(
        image=torch.from_numpy(np.clip(image, 0, 255).round().astype(np.uint8)),
        mask=torch.from_numpy(mask),
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        labels=torch.tensor(keep, dtype=torch.int64),
        instance_masks=torch.from_numpy(np.stack(inst)) if n else torch.zeros(0, size, size, dtype=torch.bool),
        keypoints=torch.tensor(kps, dtype=torch.float32).reshape(n, 5, 3),
    )


class SemanticScenes:
    """The (image, mask) pairs of a split, made on first access and kept (indexable like two tensors)."""

    def __init__(self, split: str, size: int = 64, count: int | None = None) -> None:
        self.split, self.size = split, size
        self.count = SIZES[split] if count is None else count
        self._memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(f"scene {i} out of range 0..{self.count - 1}")
        if i not in self._memo:
            s = make_scene(self.split, i, self.size)
            self._memo[i] = (s.image, s.mask)
        return self._memo[i]
