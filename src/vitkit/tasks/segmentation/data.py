"""Segmentation data: image + label-map pairs, transformed together.

Sources (``data.dataset``):

- ``digit-scenes``: the built-in scenes (:mod:`vitkit.data.digit_scenes`), 11 classes, fixed split, no download.
- an **ADE20K** root: ``images/{training,validation}/*.jpg`` with ``annotations/{training,validation}/*.png``
  (split ``train`` reads ``training``, ``val``/``test`` read ``validation``); use ``task.reduce_zero_label: true``
  (label 0 "other" becomes the ignore index, the rest shift down by one: 150 classes), as mmseg.
- a **folder**: ``images/<split>/`` beside ``masks/<split>/`` (or ``annotations/`` / ``labels/``), paired by file
  stem; a ``<split>.txt`` **list** of ``image mask`` lines (relative to ``data.root`` or the list's folder).
- ``task.class_map``: a YAML/JSON mapping of raw label values to train ids (Cityscapes' 34 ids to 19 train ids);
  values it does not list become the ignore index.

Masks are single-channel PNGs (mode L, P or I) holding class indices. Problems are reported, not hidden: images
or masks without a partner are counted and skipped at start-up (a warning names a few); a mask whose size differs
from its image, or that holds labels outside ``0..num_classes-1`` (other than the ignore index), is a bad sample:
in training it is replaced and counted (``bad_samples()``), in evaluation it is an error naming the file.

Training transforms (mmseg's ADE20K pipeline, on torchvision v2 with the mask as a ``tv_tensors.Mask``): resize to
``scale`` (long, short edge bounds) times a ratio drawn from ``ratio_range`` keeping the aspect ratio; random crop
to ``crop`` retried (up to 10 times) until no class covers more than ``cat_max_ratio`` of the crop; horizontal flip;
photometric distortion (brightness +-32, contrast and saturation 0.5-1.5, hue +-18 degrees, each with p = 0.5);
normalise; pad to ``crop`` with 0 (image) and the ignore index (mask). Test: resize to ``test_scale`` keeping the
ratio (none when null), normalise; the label stays at its original size and predictions are resized to it.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from vitkit.data.badlog import BadSampleLog
from vitkit.data.datasets import load_image

log = logging.getLogger("vitkit.data")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_DIRS = ("annotations", "masks", "labels")
ADE_SPLITS = {"train": "training", "val": "validation", "test": "validation"}


# -- transforms ---------------------------------------------------------------------------------------------------
def rescale_size(h: int, w: int, scale: Sequence[int]) -> tuple[int, int]:
    """mmcv ``rescale`` with keep_ratio: the largest size with long edge <= max(scale), short <= min(scale)."""
    f = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def photometric_distortion(img: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """mmseg ``PhotoMetricDistortion`` on a uint8 (3, H, W) image: brightness, contrast (before or after),
    saturation, hue, each applied with probability 0.5."""
    x = img.float()
    if rng.random() < 0.5:
        x = x + rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5

    def contrast(x):
        return x * rng.uniform(0.5, 1.5) if rng.random() < 0.5 else x

    if contrast_first:
        x = contrast(x)
    x = x.clamp(0, 255)
    if rng.random() < 0.5:
        x = TF.adjust_saturation(x / 255.0, rng.uniform(0.5, 1.5)) * 255.0
    if rng.random() < 0.5:
        x = TF.adjust_hue(x / 255.0, rng.uniform(-18, 18) / 360.0) * 255.0
    if not contrast_first:
        x = contrast(x)
    return x.clamp(0, 255)


class SegTrainTransform:
    def __init__(self, crop: Sequence[int], mean: Sequence[float], std: Sequence[float], *,
                 scale: Sequence[int] | None = None, ratio_range: Sequence[float] = (0.5, 2.0),
                 cat_max_ratio: float = 0.75, flip: float = 0.5, photometric: bool = True,
                 ignore_index: int = 255) -> None:
        self.crop = tuple(int(c) for c in crop)
        self.scale = tuple(scale) if scale else (4 * max(self.crop), min(self.crop))
        self.ratio_range, self.cat_max_ratio = tuple(ratio_range), cat_max_ratio
        self.flip, self.photometric, self.ignore_index = flip, photometric, ignore_index
        self.mean = torch.tensor(mean).view(3, 1, 1) * 255.0
        self.std = torch.tensor(std).view(3, 1, 1) * 255.0

    def _crop_box(self, mask: torch.Tensor, rng: random.Random) -> tuple[int, int, int, int]:
        H, W = mask.shape[-2:]
        ch, cw = min(self.crop[0], H), min(self.crop[1], W)
        for _ in range(10):
            top, left = rng.randint(0, H - ch), rng.randint(0, W - cw)
            if self.cat_max_ratio >= 1.0:
                break
            m = mask[..., top:top + ch, left:left + cw]
            _, counts = m[m != self.ignore_index].unique(return_counts=True)
            if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                break
        return top, left, ch, cw

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(torch.randint(0, 2**31, ()).item())  # seeded per sample by the engine
        h, w = img.shape[-2:]
        r = rng.uniform(*self.ratio_range)
        size = rescale_size(h, w, (self.scale[0] * r, self.scale[1] * r))
        img = TF.resize(tv_tensors.Image(img), list(size), antialias=True)
        m = TF.resize(tv_tensors.Mask(mask[None]), list(size))
        top, left, ch, cw = self._crop_box(m, rng)
        img, m = TF.crop(img, top, left, ch, cw), TF.crop(m, top, left, ch, cw)
        if rng.random() < self.flip:
            img, m = TF.horizontal_flip(img), TF.horizontal_flip(m)
        x = photometric_distortion(img.as_subclass(torch.Tensor), rng) if self.photometric else img.float()
        x = (x - self.mean) / self.std
        pad_h, pad_w = self.crop[0] - x.shape[-2], self.crop[1] - x.shape[-1]
        m = m.as_subclass(torch.Tensor)[0]
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            m = F.pad(m, (0, pad_w, 0, pad_h), value=self.ignore_index)
        return x.contiguous(), m.long()


class SegTestTransform:
    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: Sequence[int] | None = None) -> None:
        self.scale = tuple(scale) if scale else None
        self.mean = torch.tensor(mean).view(3, 1, 1) * 255.0
        self.std = torch.tensor(std).view(3, 1, 1) * 255.0

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scale is not None:
            size = rescale_size(*img.shape[-2:], self.scale)
            img = TF.resize(img, list(size), antialias=True)
        return ((img.float() - self.mean) / self.std).contiguous(), mask.long()


# -- sources ------------------------------------------------------------------------------------------------------
def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS} if folder.is_dir() else {}


def find_pairs(spec: str, split: str, root: str | None = None) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(image, mask) path pairs of ``split`` under ``spec``, and the unpaired files with the reason."""
    path = Path(spec)
    if path.is_file():
        base = Path(root) if root else path.parent
        pairs, unpaired = [], {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                unpaired[f"{path}:{n}"] = f"expected 'image mask', got {line!r}"
                continue
            img, msk = (p if Path(p).is_absolute() else str(base / p) for p in parts)
            pairs.append((img, msk))
        return pairs, unpaired
    if not path.is_dir():
        raise FileNotFoundError(f"segmentation data {spec!r}: not a folder, list file or built-in name "
                                "(expected digit-scenes, an ADE20K root, images/ + masks/ folders or a list)")
    sub = split
    if (path / "images" / ADE_SPLITS.get(split, split)).is_dir() and not (path / "images" / split).is_dir():
        sub = ADE_SPLITS.get(split, split)  # ADE20K's training / validation
    images = _images(path / "images" / sub)
    mask_dir = next((path / d / sub for d in MASK_DIRS if (path / d / sub).is_dir()), None)
    if not images or mask_dir is None:
        raise FileNotFoundError(
            f"{path}: expected images/{sub}/ with masks in one of {', '.join(d + '/' + sub for d in MASK_DIRS)}")
    masks = _images(mask_dir)
    pairs = [(str(images[k]), str(masks[k])) for k in sorted(images) if k in masks]
    unpaired = {str(images[k]): "image without a mask" for k in images if k not in masks}
    unpaired.update({str(masks[k]): "mask without an image" for k in masks if k not in images})
    return pairs, unpaired


def load_mask(path: str) -> torch.Tensor:
    """A single-channel label PNG as (H, W) int64 (palette masks give their indices)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"a label map must be single-channel (mode L, P or I), got mode {im.mode}")
        arr = np.array(im)
    return torch.from_numpy(arr.astype(np.int64))


def read_class_map(path: str) -> dict[int, int]:
    import yaml

    text = Path(path).read_text()
    raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ValueError(f"task.class_map {path}: expected a mapping raw label -> train id, got {type(raw).__name__}")
    return {int(k): int(v) for k, v in raw.items()}


class SegmentationDataset(torch.utils.data.Dataset):
    """(image, mask) items: files (``pairs``) or an in-memory source (``scenes[i] -> (image, mask)``), transformed
    together."""

    def __init__(self, transform, *, num_classes: int, classes: Sequence[str] | None = None,
                 pairs: Sequence[tuple[str, str]] = (), scenes: Any = None, train: bool = True, ignore_index: int = 255,
                 reduce_zero_label: bool = False, class_map: dict[int, int] | None = None,
                 name: str = "segmentation") -> None:
        self.transform, self.train, self.name = transform, train, name
        self.pairs = list(pairs)
        self.scenes = scenes
        self.num_classes = num_classes
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.ignore_index, self.reduce_zero_label = ignore_index, reduce_zero_label
        self.lut = None
        if class_map is not None:
            top = max(max(class_map), 255) + 1
            self.lut = torch.full((top,), ignore_index, dtype=torch.long)
            for k, v in class_map.items():
                self.lut[k] = v
        self._bad = BadSampleLog(name)

    def __len__(self) -> int:
        return len(self.pairs) if self.scenes is None else len(self.scenes)

    def bad_samples(self) -> dict[str, str]:
        return self._bad.items()

    def _labels(self, mask: torch.Tensor) -> torch.Tensor:
        if self.reduce_zero_label:  # mmseg: 0 -> 255, others minus one
            mask = torch.where(mask == 0, torch.full_like(mask, 255), mask - 1)
            mask[mask == 254] = 255
            mask = torch.where(mask == 255, torch.full_like(mask, self.ignore_index), mask)
        if self.lut is not None:
            if mask.numel() and mask.max() >= len(self.lut):
                raise ValueError(f"label {int(mask.max())} is beyond the class map")
            mask = self.lut[mask]
        return mask

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scenes is not None:
            return self.scenes[i]
        img_path, mask_path = self.pairs[i]
        img, mask = load_image(img_path), self._labels(load_mask(mask_path))
        if tuple(img.shape[-2:]) != tuple(mask.shape[-2:]):
            raise ValueError(f"mask {mask_path} is {tuple(mask.shape[-2:])}, its image {tuple(img.shape[-2:])} "
                             "(H, W): they must match")
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= self.num_classes))
        if bad.any():
            vals = mask[bad].unique()[:5].tolist()
            raise ValueError(f"mask {mask_path} holds labels {vals} outside 0..{self.num_classes - 1} "
                             f"(ignore index {self.ignore_index})")
        return img, mask

    def __getitem__(self, i: int):
        j = i
        for attempt in range(50):
            if attempt:
                j = random.Random(i * 1_000_003 + attempt).randrange(len(self))
            key = self.pairs[j][0] if self.scenes is None else str(j)
            if key in self._bad:
                continue
            try:
                img, mask = self._load(j)
            except Exception as e:  # noqa: BLE001 - unreadable file, wrong size, labels out of range
                if not self.train:
                    raise ValueError(f"{self.name}: cannot evaluate on {key}: {e}") from None
                self._bad.report(key, str(e))
                continue
            return self.transform(img, mask)
        raise RuntimeError(f"{self.name}: no usable sample after 50 replacements of item {i}; "
                           f"{len(self.bad_samples())} bad samples")


def report_unpaired(name: str, unpaired: dict[str, str], n_pairs: int) -> None:
    if not n_pairs:
        raise FileNotFoundError(f"{name}: no image/mask pairs found" + (
            f"; {len(unpaired)} unpaired files, e.g. " + "; ".join(f"{p}: {r}" for p, r in list(unpaired.items())[:3])
            if unpaired else ""))
    if unpaired:
        log.warning("%s: %d file(s) skipped: %s", name, len(unpaired),
                    "; ".join(f"{p}: {r}" for p, r in list(unpaired.items())[:3]))


def build_seg_dataset(spec: str, split: str, *, train: bool, crop: Sequence[int], mean, std, opts: Any,
                      root: str | None = None) -> SegmentationDataset:
    """The dataset for ``spec``/``split`` under the segmentation task options ``opts``."""
    ignore = opts.ignore_index
    if train:
        transform = SegTrainTransform(crop, mean, std, scale=opts.scale, ratio_range=opts.ratio_range,
                                      cat_max_ratio=opts.cat_max_ratio, flip=opts.flip,
                                      photometric=opts.photometric, ignore_index=ignore)
    else:
        transform = SegTestTransform(mean, std, opts.test_scale)
    if spec == "digit-scenes":
        from vitkit.data.digit_scenes import CLASSES, SemanticScenes

        scenes = SemanticScenes("train" if split == "train" else "test", opts.scene_size)
        return SegmentationDataset(transform, num_classes=len(CLASSES), classes=CLASSES, scenes=scenes,
                                   train=train, ignore_index=ignore, name=f"digit-scenes/{split}")
    pairs, unpaired = find_pairs(spec, split, root)
    name = f"{spec}/{split}"
    report_unpaired(name, unpaired, len(pairs))
    if opts.num_classes is None:
        raise ValueError(f"{name}: set task.num_classes (150 for ADE20K with reduce_zero_label)")
    class_map = read_class_map(opts.class_map) if opts.class_map else None
    classes = None
    if opts.class_names:
        classes = [line.strip() for line in Path(opts.class_names).read_text().splitlines() if line.strip()]
        if len(classes) != opts.num_classes:
            raise ValueError(f"task.class_names lists {len(classes)} names, task.num_classes is {opts.num_classes}")
    return SegmentationDataset(transform, num_classes=opts.num_classes, classes=classes, pairs=pairs, train=train,
                               ignore_index=ignore, reduce_zero_label=opts.reduce_zero_label, class_map=class_map,
                               name=name)
