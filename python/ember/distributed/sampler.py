"""DistributedSampler: each rank's share of every batch of an epoch.

The epoch's order is the one a single process's ``DataLoader(shuffle=True, seed=seed)`` uses
(derived from the seed and the epoch alone), cut into global batches of ``batch_size``; rank r
of N takes samples r, r + N, r + 2N, ... of each global batch. So the N ranks together see
exactly the single process's batches, every rank has the same number of steps, and a rank's
share differs from another's by at most one sample. Only when a batch has fewer samples than
there are ranks (the short last batch) does a rank get an empty share.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..data.dataset import nonnegative_int, resolve_seed
from .comm import world


class DistributedSampler:
    """The batch sampler of a rank: pass it as ``DataLoader(dataset, batch_sampler=...)``.

    Args:
        dataset: what the loader reads (only its length is used), or the number of samples.
        batch_size: samples per step over all ranks together (the global batch).
        shuffle: a new order each epoch (``set_epoch``; the DataLoader calls it).
        seed: the order's seed; None takes rank 0's draw from ember's default generator, so
            every rank shards the same order.
        drop_last: drop the last global batch when it is short.
        num_replicas, rank: the world's size and this process's rank (default: the world's).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False,
                 num_replicas=None, rank=None):
        n = dataset if isinstance(dataset, numbers.Integral) and not isinstance(dataset, bool) else None
        if n is None:
            if not hasattr(dataset, "__len__"):
                raise TypeError(f"DistributedSampler: dataset must have a length or be a sample count, got "
                                f"{type(dataset).__name__}")
            n = len(dataset)
        self.num_samples = nonnegative_int(n, "DistributedSampler: dataset length")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DistributedSampler: batch_size must be an int >= 1, got {batch_size!r}")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"DistributedSampler: {name} must be a bool, got {type(flag).__name__}")
        w = world() if num_replicas is None or rank is None else None
        self.num_replicas = w.size if num_replicas is None else nonnegative_int(num_replicas,
                                                                                "DistributedSampler: num_replicas")
        self.rank = w.rank if rank is None else nonnegative_int(rank, "DistributedSampler: rank")
        if self.num_replicas < 1 or self.rank >= self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be below num_replicas, got rank {self.rank} of "
                             f"{self.num_replicas}")
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.seed = resolve_seed(seed, "DistributedSampler: seed")
        if seed is None:  # every rank must shard the same order: rank 0's draw
            self.seed = world().broadcast_object(self.seed, 0, "DistributedSampler: seed")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = nonnegative_int(epoch, "DistributedSampler.set_epoch: epoch")

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def global_batch_sizes(self) -> list:
        """The number of samples of each step over all ranks."""
        n, b = self.num_samples, self.batch_size
        return [min(b, n - lo) for lo in range(0, len(self) * b, b)]

    def order(self) -> np.ndarray:
        """The epoch's order of all samples (the same on every rank)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch, 0, 0)))
        return rng.permutation(self.num_samples)

    def __iter__(self):
        order, b = self.order(), self.batch_size
        for lo in range(0, len(self) * b, b):
            yield order[lo:lo + b][self.rank::self.num_replicas]

    def __repr__(self) -> str:
        return (f"DistributedSampler({self.num_samples} samples, batch_size={self.batch_size} over "
                f"{self.num_replicas} ranks, rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
                f"epoch={self.epoch})")
