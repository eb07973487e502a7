"""A sampler that makes every sample's augmentation a pure function of (seed, epoch, index).

It yields ``(index, sample_seed)`` pairs; :class:`keypoints.data.CocoKeypointDataset` reseeds its
transform with ``sample_seed`` before loading. The order and the augmentations therefore do not
depend on the number of workers, on persistent workers, or on where a run was resumed: a run
resumed at epoch e draws exactly what an uninterrupted run draws at epoch e. Under DDP each rank
takes every ``world_size``-th element of the same permutation (padded by repetition as
``DistributedSampler``; the evaluator drops the repeats by dataset index).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


class SeededSampler(Sampler[tuple[int, int]]):
    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        if num_samples <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        if drop_last:
            self.per_rank = num_samples // world_size
        else:
            self.per_rank = math.ceil(num_samples / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g) if self.shuffle else torch.arange(self.num_samples)
        seeds = torch.randint(0, 2 ** 31 - 1, (self.num_samples,), generator=g)
        total = self.per_rank * self.world_size
        if total > self.num_samples:  # pad by repetition so that every rank gets the same count
            order = order.repeat(math.ceil(total / self.num_samples))
        order = order[:total][self.rank::self.world_size]
        for i in order.tolist():
            yield i, int(seeds[i])
