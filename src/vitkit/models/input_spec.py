"""The input a model expects: one frozen :class:`InputSpec`, derived from the model's resolved config.

The geometry (channels, frames, height, width) comes from the config through the family's
``input_geometry`` rule; normalisation, interpolation, crop fraction, sampling rate and test size come from the
variant's registry entry (its preprocessing, like timm's ``pretrained_cfg`` or torchvision's weight transforms).
Data pipelines, evaluation, prediction, export, benchmarks and the weights zoo read it from ``model.input_spec``;
nothing else restates it. The normalisation constants of the datasets the papers train on live here too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # the ViT paper's [-1, 1] scaling
INCEPTION_STD = (0.5, 0.5, 0.5)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # PySlowFast / UniFormer video
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What one input of a model is and how to make it from a file.

    ``num_frames`` is None for images; ``sampling_rate`` (video: tau, source frames between sampled frames) is
    the variant's ``T x tau``. ``crop_pct`` is the test-time centre-crop fraction (resize the short side to
    ``size / crop_pct``, then crop ``size``); ``test_size`` is the (H, W) evaluated at (timm's
    ``test_input_size``), the training size unless the variant says otherwise.
    """

    channels: int = 3
    height: int = 224
    width: int = 224
    num_frames: int | None = None
    sampling_rate: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    test_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"InputSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"InputSpec.num_frames must be >= 1 or None, got {self.num_frames}")
        if self.sampling_rate is not None and self.sampling_rate < 1:
            raise ValueError(f"InputSpec.sampling_rate must be >= 1 or None, got {self.sampling_rate}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"InputSpec: mean {self.mean} and std {self.std} need {self.channels} values each "
                             "(one per channel)")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"InputSpec.crop_pct must be in (0, 1], got {self.crop_pct}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.test_size is None:
            object.__setattr__(self, "test_size", (self.height, self.width))
        else:
            object.__setattr__(self, "test_size", tuple(int(v) for v in self.test_size))

    @property
    def is_video(self) -> bool:
        return self.num_frames is not None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of a training input."""
        return (self.height, self.width)

    @property
    def input_size(self) -> tuple[int, ...]:
        """One input without the batch: (C, H, W) for images, (C, T, H, W) for video."""
        if self.is_video:
            return (self.channels, self.num_frames, self.height, self.width)
        return (self.channels, self.height, self.width)

    def describe(self) -> str:
        """``8x32x32`` (video: frames x H x W) or ``32x32``."""
        return "x".join(str(s) for s in self.input_size[1:])

    def replace(self, **changes) -> "InputSpec":
        """A copy with fields replaced; a new height/width moves an unchanged ``test_size`` with it."""
        if ("height" in changes or "width" in changes) and "test_size" not in changes and \
                self.test_size == self.size:
            changes["test_size"] = None
        return dataclasses.replace(self, **changes)

    def resized(self, size: int | Sequence[int] | None = None, num_frames: int | None = None) -> "InputSpec":
        """The same spec at another (H, W) (an int is square) and/or clip length."""
        changes: dict = {}
        if size is not None:
            h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
            changes.update(height=h, width=w)
        if num_frames is not None:
            changes["num_frames"] = int(num_frames)
        return self.replace(**changes)

    def to_dict(self) -> dict:
        """Plain values (JSON-ready), e.g. for file metadata."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"], d["test_size"] = list(self.mean), list(self.std), list(self.test_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
