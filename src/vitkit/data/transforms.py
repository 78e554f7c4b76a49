"""Training and test transforms for images and clips alike (torchvision.transforms.v2).

Input: uint8 image ``(C, H, W)`` or clip ``(T, C, H, W)`` (the decoder's layout).
Output: float, normalised, image ``(C, H, W)`` or clip ``(C, T, H, W)``; with
``num_crops=3`` at test time, a stack of the three views ``(3, C, [T,] H, W)``.
A clip is wrapped as a ``tv_tensors.Video`` so every random transform draws its
parameters once and applies them to all frames.

``augment`` keys (all optional; ``None`` or ``{}`` means no augmentation):

- ``crop``: ``'rrc'`` (random-resized crop, default), ``'jitter'`` (short side
  random in ``jitter_scales`` then random crop; PySlowFast) or ``'none'``
  (test-style resize and centre crop).
- ``scale`` (0.08, 1.0), ``ratio`` (3/4, 4/3): random-resized-crop ranges.
- ``jitter_scales``: ``[min, max]`` short side; default ``[256, 320]`` scaled by size/224.
- ``hflip``: probability of a horizontal flip (default 0: a flip changes the
  class of direction-dependent data such as ``motion-digits``).
- ``color_jitter``: float (brightness = contrast = saturation) or a 3/4-tuple.
- ``randaugment``: timm-style string ``'rand-m9-n2-mstd0.5-inc1'`` or a dict
  ``{'n': 2, 'm': 9, 'mstd': 0.5}``. ``m`` is out of 10 as in timm; ``mstd`` draws
  the magnitude per call from N(m, mstd) (quantised to 0.1). torchvision's ops
  already grow in severity with magnitude, which is what timm's ``inc1`` selects.
- ``random_erasing``: probability; erased boxes get per-pixel normal noise
  (timm's ``'pixel'`` mode), after normalisation.
- ``interpolation``: ``'bicubic'`` or ``'bilinear'`` (default bilinear).
- ``crop_pct``: test-time centre-crop fraction (default 0.875 = 224/256).
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

__all__ = ["build_transforms", "parse_randaugment", "RandAugmentMstd", "spatial_crops", "Preprocess"]

_KNOWN = {"crop", "scale", "ratio", "jitter_scales", "hflip", "color_jitter", "randaugment",
          "random_erasing", "interpolation", "crop_pct"}


def parse_randaugment(spec: str | dict | None) -> dict | None:
    """``'rand-m9-n2-mstd0.5-inc1'`` -> ``{'n': 2, 'm': 9.0, 'mstd': 0.5}``."""
    if spec is None or spec is False or spec == "":
        return None
    if isinstance(spec, dict):
        out = {"n": int(spec.get("n", 2)), "m": float(spec.get("m", 9)), "mstd": float(spec.get("mstd", 0.0))}
    else:
        parts = str(spec).split("-")
        if parts[0] != "rand":
            raise ValueError(f"randaugment: expected a timm-style 'rand-m9-mstd0.5-inc1' string, got {spec!r}")
        out = {"n": 2, "m": 9.0, "mstd": 0.0}
        for p in parts[1:]:
            m = re.fullmatch(r"(mstd|mmax|inc|n|m|w|p)([0-9.]+)", p)
            if not m:
                raise ValueError(f"randaugment: cannot parse {p!r} in {spec!r}")
            key, val = m.groups()
            if key in ("n",):
                out["n"] = int(val)
            elif key in ("m", "mstd"):
                out[key] = float(val)
    if not 0 <= out["m"] <= 10:
        raise ValueError(f"randaugment magnitude must be in [0, 10] (timm scale), got {out['m']}")
    return out


class RandAugmentMstd(v2.RandAugment):
    """torchvision RandAugment with timm's magnitude scale (0-10) and Gaussian magnitude noise."""

    def __init__(self, n: int = 2, m: float = 9.0, mstd: float = 0.0, interpolation=InterpolationMode.BILINEAR):
        super().__init__(num_ops=n, magnitude=round(m * 10), num_magnitude_bins=101, interpolation=interpolation)
        self.m, self.mstd = m, mstd

    def forward(self, *inputs: Any) -> Any:
        if self.mstd > 0:
            m = float(torch.normal(torch.tensor(self.m), torch.tensor(self.mstd)).clamp(0, 10))
            self.magnitude = round(m * 10)
        return super().forward(*inputs)


def _interp(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name)
    except ValueError as e:
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {name!r}") from e


def spatial_crops(x: torch.Tensor, size: tuple[int, int], num_crops: int) -> list[torch.Tensor]:
    """``num_crops`` (1 or 3) crops of ``size`` along the long side: centre, or start/centre/end."""
    h, w = x.shape[-2:]
    th, tw = size
    if num_crops == 1:
        return [F.center_crop(x, [th, tw])]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    out = []
    for k in range(3):
        if w - tw >= h - th:  # landscape: move along the width
            top, left = (h - th) // 2, [0, (w - tw) // 2, w - tw][k]
        else:
            top, left = [0, (h - th) // 2, h - th][k], (w - tw) // 2
        out.append(F.crop(x, top, left, th, tw))
    return out


class Preprocess(torch.nn.Module):
    """uint8 image/clip -> float normalised tensor(s); see the module docstring."""

    def __init__(self, geometric: v2.Transform, photometric: v2.Transform, post: v2.Transform,
                 size: tuple[int, int], num_crops: int = 1):
        super().__init__()
        self.geometric, self.photometric, self.post = geometric, photometric, post
        self.size, self.num_crops = size, num_crops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 image (C,H,W) or clip (T,C,H,W), got {x.dtype}")
        if x.ndim == 3:
            x = tv_tensors.Image(x)
        elif x.ndim == 4:
            x = tv_tensors.Video(x)
        else:
            raise ValueError(f"expected an image (C,H,W) or clip (T,C,H,W), got shape {tuple(x.shape)}")
        video = x.ndim == 4
        x = self.photometric(self.geometric(x))
        views = spatial_crops(x, self.size, self.num_crops) if self.num_crops > 1 else [x]
        views = [self.post(v) for v in views]
        if video:
            views = [v.as_subclass(torch.Tensor).transpose(0, 1) for v in views]  # T,C,H,W -> C,T,H,W
        else:
            views = [v.as_subclass(torch.Tensor) for v in views]
        return views[0] if self.num_crops == 1 else torch.stack(views)


def _compose(ops: list) -> v2.Transform:
    return v2.Compose(ops) if ops else v2.Identity()


def build_transforms(train: bool, input_size: Sequence[int], mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225), augment: dict | None = None,
                     num_crops: int = 1) -> Preprocess:
    """Transform for ``input_size`` (C,H,W) or (C,T,H,W); train uses ``augment``, test resizes and crops."""
    if len(input_size) not in (3, 4):
        raise ValueError(f"input_size must be (C,H,W) or (C,T,H,W), got {tuple(input_size)}")
    aug = dict(augment or {})
    unknown = set(aug) - _KNOWN
    if unknown:
        raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(_KNOWN)}")
    size = (int(input_size[-2]), int(input_size[-1]))
    interp = _interp(aug.get("interpolation", "bilinear"))
    crop_pct = float(aug.get("crop_pct", 0.875))
    post_ops: list = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    photo: list = []
    if train and augment:
        crop = aug.get("crop", "rrc")
        if crop == "rrc":
            geo: list = [v2.RandomResizedCrop(size, scale=tuple(aug.get("scale", (0.08, 1.0))),
                                              ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))),
                                              interpolation=interp, antialias=True)]
        elif crop == "jitter":
            s = min(size)
            lo, hi = aug.get("jitter_scales", (round(s * 256 / 224), round(s * 320 / 224)))
            geo = [v2.RandomShortestSize(list(range(int(lo), int(hi) + 1)), interpolation=interp, antialias=True),
                   v2.RandomCrop(size)]
        elif crop == "none":
            geo = [v2.Resize(int(math.floor(min(size) / crop_pct)), interpolation=interp, antialias=True),
                   v2.CenterCrop(size)]
        else:
            raise ValueError(f"augment crop must be 'rrc', 'jitter' or 'none', got {crop!r}")
        if aug.get("hflip", 0.0):
            geo.append(v2.RandomHorizontalFlip(float(aug["hflip"])))
        cj = aug.get("color_jitter")
        if cj:
            cj = (float(cj),) * 3 if isinstance(cj, (int, float)) else tuple(cj)
            photo.append(v2.ColorJitter(*cj))
        ra = parse_randaugment(aug.get("randaugment"))
        if ra:
            photo.append(RandAugmentMstd(ra["n"], ra["m"], ra["mstd"], interpolation=interp))
        if aug.get("random_erasing"):
            post_ops.append(v2.RandomErasing(float(aug["random_erasing"]), value="random"))
        if num_crops != 1:
            raise ValueError("num_crops > 1 is a test-time protocol")
    elif num_crops == 3:
        geo = [v2.Resize(min(size), interpolation=interp, antialias=True)]  # PySlowFast: short side = crop size
    else:
        geo = [v2.Resize(int(math.floor(min(size) / crop_pct)), interpolation=interp, antialias=True)]
        if num_crops == 1:
            geo.append(v2.CenterCrop(size))
    return Preprocess(_compose(geo), _compose(photo), _compose(post_ops), size,
                      num_crops=num_crops if not train else 1)
