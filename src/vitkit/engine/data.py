"""The engine's side of the data pipeline: datasets from a recipe, reproducible sampling and seeding.

Every training sample is drawn with its RNGs seeded from ``(seed, epoch, index)``, and the sampler's order is a
function of ``(seed, epoch)``: a run can stop anywhere and resume to the same batches and the same augmented
pixels, with any number of loader workers, and N processes see exactly the samples one process would.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from vitkit.data import build_dataset
from vitkit.data.repeat_aug import RepeatAugSampler
from vitkit.models.input_spec import InputSpec
from vitkit.registry import input_spec, model_info, resolve_config

from .recipe import Recipe, RecipeError


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python runs)."""
    h = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def seed_all(seed: int) -> None:
    """Seed torch (CPU, and CUDA once initialised), ``random`` and numpy; cheap enough to call per sample."""
    torch.default_generator.manual_seed(seed)  # torch.manual_seed also probes CUDA: ~250 us a call
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))


class SeededDataset(Dataset):
    """Receives ``(epoch, index)`` from :class:`EpochSampler` and seeds the RNGs before loading the sample."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, index, view = key
        seed_all(mix_seed(self.seed, epoch, index, view))
        return self.dataset[index]


class EpochSampler(Sampler[tuple[int, int, int]]):
    """Yields ``(epoch, index, view)`` from a distributed base sampler, skipping ``start`` indices on resume.

    The base is :class:`torch.utils.data.DistributedSampler` (shuffled by ``seed + epoch``, padded to a multiple
    of the world size, rank r takes every world-th index) or the data package's ``RepeatAugSampler``. ``view`` is
    0, or with ``distinct_views`` (repeated augmentation) the position in the global stream, so the repeats of a
    sample - on other ranks or on the same one - are augmented differently.
    """

    def __init__(self, base: Sampler[int], rank: int = 0, world_size: int = 1, distinct_views: bool = False) -> None:
        self.base = base
        self.rank, self.world_size, self.distinct_views = rank, world_size, distinct_views
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        for k, i in enumerate(self.base):
            if k >= self.start:
                yield self.epoch, int(i), (self.rank + k * self.world_size if self.distinct_views else 0)

    def __len__(self) -> int:
        return len(self.base) - self.start

    def full_length(self) -> int:
        return len(self.base)


def train_sampler(dataset: Dataset, recipe: Recipe, rank: int, world_size: int) -> EpochSampler:
    if recipe.data.repeated_aug > 1:
        base = RepeatAugSampler(dataset, num_repeats=recipe.data.repeated_aug, num_replicas=world_size, rank=rank,
                                shuffle=True, seed=recipe.train.seed)
    else:
        base = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                  seed=recipe.train.seed, drop_last=False)
    return EpochSampler(base, rank, world_size, distinct_views=recipe.data.repeated_aug > 1)


def _size_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, float)):
        return (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise RecipeError(f"data.input_size must be H or [H, W], got {list(value)}")
    return value


def resolve_input(recipe: Recipe, log=None, *, data_follows_model: bool = True) -> tuple[dict[str, Any], InputSpec]:
    """The model config overrides and the :class:`InputSpec` of a run: one geometry for model and data.

    The model's geometry comes from ``model.name`` and its config overrides (``model.img_size``,
    ``model.num_frames`` ...): the data follows it. ``data.input_size`` / ``data.num_frames`` may restate it;
    if they disagree with the model the recipe is an error naming both values, unless ``data.resize_model``
    is true: then the model is built at the data's size (position tables resampled from the variant's) and the
    change is logged. ``data.mean`` / ``data.std`` / ``data.sampling_rate`` replace the variant's preprocessing.
    ``data_follows_model=False`` (dense tasks, whose ``data.input_size`` is a crop and whose backbone runs at any
    size): the data's size and frames replace the spec's and the model keeps its config.
    """
    name = recipe.model.name
    cfg = dict(recipe.model.config)
    info = model_info(name)
    spec = input_spec(name, **cfg)
    d = recipe.data
    want_size = _size_pair(d.input_size) if d.input_size is not None else None
    differ = []
    if want_size is not None and want_size != spec.size:
        differ.append(f"data.input_size={list(want_size)} but {name} is built for {spec.height}x{spec.width} "
                      f"(model.img_size)")
    if d.num_frames is not None and d.num_frames != spec.num_frames:
        what = f"{spec.num_frames} frames (model.num_frames)" if spec.is_video else "images (no frames)"
        differ.append(f"data.num_frames={d.num_frames} but {name} is built for {what}")
    if differ and not data_follows_model:
        spec = spec.resized(want_size, d.num_frames if spec.is_video else None)
    elif differ:
        if not d.resize_model:
            raise RecipeError("; ".join(differ) + ". Set the model's size (model.img_size / model.num_frames): the "
                              "data follows it; or set data.resize_model=true to build the model at the data's size")
        change = info.builder.config_for_input(resolve_config(name, **cfg), want_size, d.num_frames)
        cfg.update(change)
        spec = input_spec(name, **cfg)
        if log is not None:
            log(f"data.resize_model: building {name} at {spec.describe()} for the data "
                f"({', '.join(f'model.{k}={v}' for k, v in change.items())}); position tables are resampled")
    changes: dict[str, Any] = {}
    if d.mean is not None:
        changes["mean"] = tuple(d.mean)
    if d.std is not None:
        changes["std"] = tuple(d.std)
    if d.sampling_rate is not None and spec.is_video:
        changes["sampling_rate"] = int(d.sampling_rate)
    try:
        return cfg, spec.replace(**changes)
    except ValueError as e:
        raise RecipeError(f"data: {e}") from None


def build_split(recipe: Recipe, spec: InputSpec, *, train: bool, num_clips: int = 1, num_crops: int = 1,
                classes: list[str] | None = None):
    """``vitkit.data.build_dataset`` for the recipe's train or test split (test: with the train split's classes).

    Geometry, normalisation and sampling rate come from ``spec`` (see :func:`resolve_input`).
    """
    return build_dataset(
        recipe.data.dataset, recipe.data.train_split if train else recipe.data.val_split, train=train,
        input_size=spec.input_size, sampling_rate=spec.sampling_rate or 1, num_clips=num_clips,
        num_crops=num_crops, mean=spec.mean, std=spec.std,
        # test: the model's own resize/crop (crop_pct, interpolation), e.g. ViT at 384 takes the full image
        augment=dict(recipe.data.augment) if train else {"crop_pct": spec.crop_pct,
                                                          "interpolation": spec.interpolation},
        root=recipe.data.root, classes=classes, sampling=recipe.data.sampling, decoder=recipe.data.decoder,
        data_format=recipe.data.format, short_video=recipe.data.short_video,
    )
