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

A transform that raises is a configuration error, never bad data: :class:`TransformError`
names the ``data.augment`` key (or ``data.mean``/``data.std``) whose operation failed.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

__all__ = ["build_transforms", "parse_randaugment", "RandAugmentMstd", "spatial_crops", "Preprocess", "Stage",
           "TransformError"]

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


class TransformError(ValueError):
    """A transform failed on a decoded sample: the recipe's transform settings are wrong, not the data.

    Survives DataLoader workers as one line: torch re-raises ``TransformError(traceback_text)`` in the main
    process, and the constructor keeps only the original message.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught TransformError"):
            found = re.findall(r"TransformError: (.*)", message)
            message = found[-1] if found else message
        super().__init__(message)


_GEOMETRIC_OPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})
_TENSOR_INTERPOLATIONS = frozenset({InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT,
                                    InterpolationMode.BILINEAR})


def _per_frame_pil(x: torch.Tensor, op) -> torch.Tensor:
    """Apply ``op`` (PIL image -> PIL image) to every ``(C, H, W)`` frame of a uint8 image or clip."""
    frames = x.as_subclass(torch.Tensor).reshape(-1, *x.shape[-3:])
    out = torch.stack([F.pil_to_tensor(op(F.to_pil_image(f))) for f in frames]).reshape(x.shape)
    return tv_tensors.wrap(out, like=x) if isinstance(x, tv_tensors.TVTensor) else out


class RandAugmentMstd(v2.RandAugment):
    """torchvision RandAugment with timm's magnitude scale (0-10) and Gaussian magnitude noise.

    Geometric ops with an interpolation tensors do not support (bicubic) run on PIL images, one frame at a time
    with the same op and magnitude (timm and PySlowFast apply RandAugment to PIL images).
    """

    def __init__(self, n: int = 2, m: float = 9.0, mstd: float = 0.0, interpolation=InterpolationMode.BILINEAR,
                 fill: Sequence[int] | int | None = None):
        super().__init__(num_ops=n, magnitude=round(m * 10), num_magnitude_bins=101, interpolation=interpolation,
                         fill=list(fill) if isinstance(fill, (list, tuple)) else fill)
        self.m, self.mstd = m, mstd

    def forward(self, *inputs: Any) -> Any:
        if self.mstd > 0:
            m = float(torch.normal(torch.tensor(self.m), torch.tensor(self.mstd)).clamp(0, 10))
            self.magnitude = round(m * 10)
        return super().forward(*inputs)

    def _apply_image_or_video_transform(self, image, transform_id, magnitude, interpolation, fill):
        apply = super()._apply_image_or_video_transform
        if (transform_id in _GEOMETRIC_OPS and isinstance(image, torch.Tensor)
                and InterpolationMode(interpolation) not in _TENSOR_INTERPOLATIONS):
            return _per_frame_pil(image, lambda im: apply(im, transform_id, magnitude, interpolation, fill))
        return apply(image, transform_id, magnitude, interpolation, fill)


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


class Stage(torch.nn.Module):
    """Transforms applied in order, each tagged with the recipe key that configured it (for error messages)."""

    def __init__(self, ops: Sequence[tuple[str, Any]] = (), train: bool = True):
        super().__init__()
        self.keys = [k for k, _ in ops]
        self.ops = torch.nn.ModuleList([op for _, op in ops])
        self.train_stage = train

    def forward(self, x: Any) -> Any:
        for key, op in zip(self.keys, self.ops):
            try:
                x = op(x)
            except Exception as e:  # noqa: BLE001 - any failure here is the configuration's
                where = " or ".join(f"data.augment.{k}" if not k.startswith("data.") else k for k in key.split(","))
                kind = "training" if self.train_stage else "test"
                raise TransformError(
                    f"{kind} transform failed in {type(op).__name__} on a decoded "
                    f"{'clip' if isinstance(x, tv_tensors.Video) else 'image'} of shape {tuple(x.shape)}: "
                    f"{type(e).__name__}: {' '.join(str(e).split())}. This is a configuration error, not bad "
                    f"data: change {where} in the recipe") from e
        return x


class Preprocess(torch.nn.Module):
    """uint8 image/clip -> float normalised tensor(s); see the module docstring."""

    def __init__(self, geometric: Stage, photometric: Stage, post: Stage,
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
    post_ops: list = [("data.mean,data.std", v2.ToDtype(torch.float32, scale=True)),
                      ("data.mean,data.std", v2.Normalize(list(mean), list(std)))]
    photo: list = []
    if train and augment:
        crop = aug.get("crop", "rrc")
        if crop == "rrc":
            geo: list = [("crop,scale,ratio,interpolation", v2.RandomResizedCrop(
                size, scale=tuple(aug.get("scale", (0.08, 1.0))), ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))),
                interpolation=interp, antialias=True))]
        elif crop == "jitter":
            s = min(size)
            lo, hi = aug.get("jitter_scales", (round(s * 256 / 224), round(s * 320 / 224)))
            geo = [("jitter_scales,interpolation", v2.RandomShortestSize(
                       list(range(int(lo), int(hi) + 1)), interpolation=interp, antialias=True)),
                   ("crop,jitter_scales", v2.RandomCrop(size))]
        elif crop == "none":
            geo = [("crop_pct,interpolation", v2.Resize(int(math.floor(min(size) / crop_pct)),
                                                        interpolation=interp, antialias=True)),
                   ("crop", v2.CenterCrop(size))]
        else:
            raise ValueError(f"augment crop must be 'rrc', 'jitter' or 'none', got {crop!r}")
        if aug.get("hflip", 0.0):
            geo.append(("hflip", v2.RandomHorizontalFlip(float(aug["hflip"]))))
        ra = parse_randaugment(aug.get("randaugment"))
        cj = aug.get("color_jitter")
        if cj and not ra:  # timm: "color jitter is enabled when not using AA"
            cj = (float(cj),) * 3 if isinstance(cj, (int, float)) else tuple(cj)
            photo.append(("color_jitter", v2.ColorJitter(*cj)))
        if ra:
            fill = [min(255, round(255 * m)) for m in mean] if len(mean) > 1 else min(255, round(255 * mean[0]))
            photo.append(("randaugment,interpolation",
                          RandAugmentMstd(ra["n"], ra["m"], ra["mstd"], interpolation=interp, fill=fill)))
        if aug.get("random_erasing"):
            post_ops.append(("random_erasing", v2.RandomErasing(float(aug["random_erasing"]), value="random")))
        if num_crops != 1:
            raise ValueError("num_crops > 1 is a test-time protocol")
    elif num_crops == 3:
        # PySlowFast: short side = crop size
        geo = [("interpolation", v2.Resize(min(size), interpolation=interp, antialias=True))]
    else:
        geo = [("crop_pct,interpolation", v2.Resize(int(math.floor(min(size) / crop_pct)),
                                                    interpolation=interp, antialias=True))]
        if num_crops == 1:
            geo.append(("crop_pct", v2.CenterCrop(size)))
    return Preprocess(Stage(geo, train), Stage(photo, train), Stage(post_ops, train), size,
                      num_crops=num_crops if not train else 1)
