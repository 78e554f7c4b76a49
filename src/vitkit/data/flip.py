"""Horizontal flip for direction-sensitive classes: flip the pixels *and* swap the label.

A mirrored "Pushing something from left to right" is "Pushing something from right to left": a plain flip
mislabels it, which is why the Something-Something recipes train without flips. mmaction2's ``Flip`` takes a
``flip_label_map`` instead; :func:`left_right_label_map` derives it from the class names by exchanging the words
"left" and "right" (whole words: not "upright"), keeping only swaps that land on another class. On the shipped
SSv2 list it gives mmaction2's ``sthv2_flip_label_map`` {86: 87, 93: 94, 166: 167} (both ways).

Recipe: ``augment: {hflip: 0.5, flip_label_map: left-right}`` (or an explicit ``{86: 87, ...}`` mapping, applied
both ways). The flip then happens in the dataset, where the label is known, instead of in the transforms.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

__all__ = ["left_right_label_map", "resolve_flip_label_map", "FlipLabelSwap"]

_LR = re.compile(r"\b(left|right|Left|Right)\b")
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}


def left_right_label_map(classes: Sequence[str]) -> dict[int, int]:
    """``{i: j}`` for every class whose name with left/right exchanged is class ``j`` (``i != j``)."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for i, c in enumerate(classes):
        j = index.get(_LR.sub(lambda m: _SWAP[m.group(0)], c))
        if j is not None and j != i:
            out[i] = j
    return out


def resolve_flip_label_map(spec: str | Mapping, classes: Sequence[str]) -> dict[int, int]:
    """``'left-right'`` -> :func:`left_right_label_map`; a mapping -> symmetric ``{int: int}`` within range."""
    if spec == "left-right":
        return left_right_label_map(classes)
    if not isinstance(spec, Mapping):
        raise ValueError(f"augment.flip_label_map must be 'left-right' or a mapping of class indices, got {spec!r}")
    out: dict[int, int] = {}
    for a, b in spec.items():
        a, b = int(a), int(b)
        for v in (a, b):
            if not 0 <= v < len(classes):
                raise ValueError(f"augment.flip_label_map: class {v} out of range [0, {len(classes)})")
        out[a], out[b] = b, a
    return out


class FlipLabelSwap(torch.utils.data.Dataset):
    """Training items ``(x, label)`` flipped horizontally with probability ``p``, the label mapped by ``label_map``."""

    def __init__(self, dataset, p: float, label_map: Mapping[int, int]) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"augment.hflip must be a probability in [0, 1], got {p}")
        self.dataset, self.p, self.label_map = dataset, float(p), dict(label_map)

    def __getattr__(self, name):  # classes, num_classes, bad_samples ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, label = self.dataset[i]
        if self.p and float(torch.rand(())) < self.p:
            x = x.flip(-1)
            label = self.label_map.get(int(label), int(label))
        return x, label
