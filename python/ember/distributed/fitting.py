"""What ``fit`` does differently when it runs on several ranks (see ``ember.training.fit``).

``batch_size`` stays the global batch: each step, rank r of N takes its share of the same
global batch a single process would (``DistributedSampler``), its gradients are weighted by
its share of that batch's samples and summed across ranks, so the N ranks apply the single
process's update (up to the order of the float32 sums). Losses and metrics are summed over
the ranks at each epoch's end, so every rank logs the global values; decisions that end
training (Ctrl-C, ``stop_training``) are agreed on, so no rank leaves the others waiting.
"""

from __future__ import annotations

from ..data import DataLoader
from .comm import World, init, launched_world_size
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler


def fit_world(distributed) -> World | None:
    """The world to train in, or None to train alone. ``distributed=None`` means: when the
    process was started by an MPI launcher with several ranks."""
    if distributed is None:
        distributed = launched_world_size() > 1
    if not isinstance(distributed, bool):
        raise TypeError(f"fit: distributed must be True, False or None, got {distributed!r}")
    if not distributed:
        return None
    w = init()
    return w if w.size > 1 else None


def shard(loader: DataLoader, w: World, what: str) -> DataLoader:
    """``loader`` with each batch split over the ranks (as is, when it already is)."""
    if isinstance(loader.batch_sampler, DistributedSampler):
        return loader
    if loader.batch_sampler is not None:
        raise ValueError(f"{what}: distributed training splits each batch over the ranks itself, but the "
                         "DataLoader has a batch_sampler of its own; give it a DistributedSampler or none")
    seed = w.broadcast_object(loader.seed, 0, f"{what}: the loader's seed")
    sampler = DistributedSampler(loader.dataset, loader.batch_size, shuffle=loader.shuffle, seed=seed,
                                 drop_last=loader.drop_last, num_replicas=w.size, rank=w.rank)
    sharded = DataLoader(loader.dataset, collate_fn=loader.collate_fn, transform=loader.transform, seed=seed,
                         prefetch=loader.prefetch, num_workers=loader.num_workers,
                         multiprocessing_context=loader.multiprocessing_context, batch_sampler=sampler)
    sharded.device = loader.device
    sharded.set_epoch(loader.epoch)
    return sharded


class FitSync:
    """One distributed ``fit``: the sharded loaders, the gradient sum and the agreements."""

    def __init__(self, w: World, model, train_loader, val_loader):
        self.world = w
        self.train_loader = shard(train_loader, w, "fit")
        self.val_loader = None if val_loader is None else shard(val_loader, w, "fit: validation_data")
        self.ddp = DistributedDataParallel(model)
        self.ddp.gradient_weight = 1.0  # see loss_weight
        self.global_sizes = self.train_loader.batch_sampler.global_batch_sizes()

    def loss_weight(self, step: int, local: int, loss_fn=None) -> float:
        """What this rank's loss of step ``step`` is multiplied by before its backward: its share
        of the step's samples for a mean (the default), 1 for a loss that sums its samples
        (``reduction='sum'``), so that the ranks' gradients add up to the whole batch's. (Weighing
        the loss, a number, instead of the gradients spares the wrapper a pass over them; it then
        just sums.)"""
        if getattr(loss_fn, "reduction", None) == "sum":
            return 1.0
        return local / self.global_sizes[step]

    def any(self, flag: bool, what: str) -> bool:
        return self.world.any(flag, what)

    def global_samples(self, steps: int) -> int:
        """Samples all ranks together trained on in the first ``steps`` steps of an epoch."""
        return sum(self.global_sizes[:steps])

    def reduce(self, metric_objs, total: float, count: int, what: str) -> tuple:
        """Every rank's loss sum, sample count and metric counts, summed in rank order (so each
        rank computes the same bits); the metrics are left holding the sums."""
        parts = self.world.all_gather_object([total, count, [m.state() for m in metric_objs]], what)
        for m in metric_objs:
            m.reset()
        total, count = 0.0, 0
        for t, c, states in parts:
            total += t
            count += c
            for m, st in zip(metric_objs, states):
                m.merge_state(st)
        return total, count
