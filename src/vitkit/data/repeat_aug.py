"""Repeated augmentation (Hoffer et al. 2020; DeiT's RASampler), DDP-aware.

Each epoch a (seeded) permutation of the dataset is expanded so that every
index appears ``num_repeats`` times in a row; the list is padded to a multiple
of ``num_replicas`` and rank ``r`` takes every ``num_replicas``-th entry from
``r``. Consecutive copies of a sample therefore land on different ranks (or,
with one process, side by side in the same batch), each with its own random
augmentation. Each rank yields ``ceil(len(dataset) / num_replicas)`` indices per
epoch, as a ``DistributedSampler`` would, so an epoch costs the same number of
steps; call ``set_epoch(e)`` every epoch.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.distributed as dist

__all__ = ["RepeatAugSampler"]


class RepeatAugSampler(torch.utils.data.Sampler[int]):
    """Sampler yielding each index ``num_repeats`` times, split over ``num_replicas`` ranks."""

    def __init__(self, dataset, num_repeats: int = 3, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0):
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        self.dataset_len = len(dataset)
        self.num_repeats, self.num_replicas, self.rank = num_repeats, num_replicas, rank
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.total = math.ceil(self.dataset_len * num_repeats / num_replicas) * num_replicas
        self.num_selected = math.ceil(self.dataset_len / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_selected

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g)
        else:
            order = torch.arange(self.dataset_len)
        idx = order.repeat_interleave(self.num_repeats).tolist()
        idx += idx[: self.total - len(idx)]
        return iter(idx[self.rank:self.total:self.num_replicas][: self.num_selected])
