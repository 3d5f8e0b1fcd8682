"""Pruning while ``fit`` trains: gradual schedules with fine-tuning in between."""

from __future__ import annotations

import numpy as np

from .. import backend, nn
from ..callbacks import Callback
from .prune import CRITERIA, _chain, apply_masks, kept_channels, prune_structured, prune_unstructured


class PruningCallback(Callback):
    """Prune ``amount`` of the model, step by step, while it trains (so the training in between
    repairs what each step removed).

    Unstructured (``structured=False``): at the start of every epoch from ``start_epoch`` to
    ``end_epoch`` the sparsity of each Linear/Conv2d rises along the cubic schedule of Zhu & Gupta
    (2017), ``amount * (1 - (1 - progress)**3)``, reaching ``amount`` at ``end_epoch``; the masks
    are applied after every step, so pruned weights stay zero.

    Structured (``structured=True``): at the end of each epoch listed in ``epochs`` channels are
    removed (``criterion`` as ``prune``'s): after the k-th of n listed epochs each prunable layer
    keeps what ``prune`` of ``amount * k / n`` keeps of its original channels, so after the last
    one exactly as many as one-shot ``prune(model, amount)`` keeps; the optimizer keeps training the
    smaller model, its state (Adam's moments, say) cut to the channels kept. ``self.results``
    holds each step's ``PruneResult``. Structured pruning is refused in distributed training
    (more than one rank): it swaps in new parameters, which the gradient sum across the ranks
    would not follow; prune before or after the distributed ``fit``, or use unstructured masks.
    """

    def __init__(self, amount: float, structured: bool = False, start_epoch: int = 0, end_epoch: int | None = None,
                 epochs=None, criterion: str = "l1"):
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
            raise ValueError(f"PruningCallback: amount must be a fraction in [0, 1), got {amount!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"PruningCallback: criterion must be one of {CRITERIA}, got {criterion!r}")
        self.amount, self.structured, self.criterion = float(amount), bool(structured), criterion
        if structured:
            if epochs is None or not len(epochs) or any(isinstance(e, bool) or not isinstance(e, (int, np.integer))
                                                        or e < 0 for e in epochs):
                raise ValueError("PruningCallback: structured pruning needs epochs=[...], the epochs (from 0) at "
                                 f"whose end channels are removed; got {epochs!r}")
            self.epochs = sorted(int(e) for e in epochs)
        else:
            if end_epoch is None or end_epoch < start_epoch:
                raise ValueError(f"PruningCallback: end_epoch must be given and >= start_epoch ({start_epoch}), "
                                 f"got {end_epoch!r}")
            self.start_epoch, self.end_epoch = int(start_epoch), int(end_epoch)
        self.results = []
        self._channels = None  # each prunable layer's channels before the first structured step

    # ------------------------------------------------------------ unstructured
    def target(self, epoch: int) -> float:
        """The sparsity of the unstructured schedule at the start of ``epoch``."""
        span = self.end_epoch - self.start_epoch
        progress = 1.0 if span == 0 else min(max((epoch - self.start_epoch) / span, 0.0), 1.0)
        return self.amount * (1.0 - (1.0 - progress) ** 3)

    def on_epoch_begin(self, epoch, logs=None):
        if self.structured:
            _refuse_distributed()
        elif epoch >= self.start_epoch:
            self.results.append(prune_unstructured(self.model, self.target(epoch), inplace=True)[1])

    def on_train_batch_end(self, batch, logs=None):
        if not self.structured:
            apply_masks(self.model)

    # ------------------------------------------------------------ structured
    def on_epoch_end(self, epoch, logs=None):
        if not self.structured or epoch not in self.epochs:
            return
        step = self.epochs.index(epoch) + 1
        goal = self.amount * step / len(self.epochs)
        layers = {qual: m.weight.shape[0] for _, _, qual, m in _chain(self.model)
                  if isinstance(m, (nn.Linear, nn.Conv2d))}
        if self._channels is None:
            self._channels = layers
        # Each layer's target is counted from its original channels, as prune(amount) counts them,
        # so the last step leaves exactly what one-shot pruning would.
        fractions = {qual: 1.0 - kept_channels(self._channels[qual], goal) / now for qual, now in layers.items()}
        _, result = prune_structured(self.model, fractions, self.criterion, inplace=True)
        self.results.append(result)
        optimizer = self.params.get("optimizer")
        if optimizer is not None:
            _follow(optimizer, result.moves)


def _refuse_distributed() -> None:
    from .. import distributed

    size = distributed.world_size() if distributed.is_initialized() else 1
    if size > 1:
        raise RuntimeError(f"PruningCallback: structured pruning swaps the model's parameters for smaller ones, "
                           f"but this process is one of {size} ranks, whose gradient sum would keep following the "
                           "old ones and let the ranks drift apart; prune before or after the distributed fit, or "
                           "use structured=False (masks keep the parameters)")


def _follow(optimizer, moves) -> None:
    """Point ``optimizer`` at the new parameters and cut its state of each old one to match."""
    for old, new, cut in moves:
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        state = optimizer.state.pop(id(old), None)
        if state is not None:
            optimizer.state[id(new)] = {
                k: backend.namespace(v).ascontiguousarray(cut(v)) if getattr(v, "shape", None) == tuple(old.shape)
                else v for k, v in state.items()}
