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

from .recipe import Recipe


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
        from vitkit.data.samplers import RepeatAugSampler

        base = RepeatAugSampler(dataset, num_repeats=recipe.data.repeated_aug, num_replicas=world_size, rank=rank,
                                shuffle=True, seed=recipe.train.seed)
    else:
        base = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                  seed=recipe.train.seed, drop_last=False)
    return EpochSampler(base, rank, world_size, distinct_views=recipe.data.repeated_aug > 1)


def model_input(info: Any, recipe: Recipe) -> dict[str, Any]:
    """Input size, clip length, mean and std: the recipe's where given, else the model's registry entry."""
    size = info.input_size
    video = len(size) == 4
    hw = tuple(size[-2:])
    if recipe.data.input_size is not None:
        s = recipe.data.input_size
        hw = (int(s), int(s)) if isinstance(s, (int, float)) else tuple(int(v) for v in s)
    frames = recipe.data.num_frames if recipe.data.num_frames is not None else (size[1] if video else None)
    return {
        "video": video, "input_size": hw, "num_frames": frames, "channels": int(size[0]),
        "crop_pct": float(info.crop_pct), "interpolation": str(info.interpolation),
        "mean": tuple(recipe.data.mean) if recipe.data.mean is not None else tuple(info.mean),
        "std": tuple(recipe.data.std) if recipe.data.std is not None else tuple(info.std),
    }


def build_split(recipe: Recipe, inp: dict[str, Any], *, train: bool, num_clips: int = 1, num_crops: int = 1,
                classes: list[str] | None = None):
    """``vitkit.data.build_dataset`` for the recipe's train or test split (test: with the train split's classes)."""
    from vitkit.data import build_dataset

    size = (inp["channels"], inp["num_frames"], *inp["input_size"]) if inp["video"] else (inp["channels"], *inp["input_size"])
    return build_dataset(
        recipe.data.dataset, recipe.data.train_split if train else recipe.data.val_split, train=train,
        input_size=size, sampling_rate=recipe.data.sampling_rate, num_clips=num_clips, num_crops=num_crops,
        mean=inp["mean"], std=inp["std"],
        # test: the model's own resize/crop (crop_pct, interpolation), e.g. ViT at 384 takes the full image
        augment=dict(recipe.data.augment) if train else {"crop_pct": inp["crop_pct"],
                                                          "interpolation": inp["interpolation"]},
        root=recipe.data.root, classes=classes, sampling=recipe.data.sampling, decoder=recipe.data.decoder,
        data_format=recipe.data.format, short_video=recipe.data.short_video,
    )
