"""Keras's classification losses with Keras's meanings, for ``compile(loss=...)``.

``categorical_crossentropy`` takes one-hot or probability targets of shape (N, C);
``sparse_categorical_crossentropy`` takes class indices, (N,) or Keras's (N, 1). Both read the
model's output as probabilities unless ``from_logits=True``, as Keras does; a model whose
last layer is a softmax is trained on the logits before it (``ember.keras.Sequential`` does
this by itself), so the loss runs on Ember's fused softmax cross-entropy either way.
Probabilities outside [0, 1] are refused: they are logits given to a loss told otherwise.

The loss objects are called as ``loss(y_pred, y_true)``, the model's output first (the order
``compile`` / ``fit`` use, PyTorch's); the functions ``categorical_crossentropy(y_true, y_pred)``
and ``sparse_categorical_crossentropy(y_true, y_pred)`` take Keras's order and return Keras's
per-sample losses. For ``compile``, pass a loss's name or object.
"""

from __future__ import annotations

import math

import numpy as np

from ._check import real
from .nn import Module
from .nn import functional as F
from .tensor import Tensor

_EPSILON = 1e-7  # Keras's clip of probabilities before the logarithm

# Keras's reduction names, and Ember's: the batch's mean, its sum, or the per-sample losses.
_REDUCTIONS = {"sum_over_batch_size": "mean", "mean": "mean", "sum": "sum", "none": "none", None: "none"}


def _values(y):
    return y._data if isinstance(y, Tensor) else np.asarray(y)


def _prediction(y_pred, loss) -> Tensor:
    """``y_pred`` as a Tensor: an ember Tensor, or a NumPy array (or sequence) of numbers."""
    if isinstance(y_pred, Tensor):
        return y_pred
    arr = np.asarray(y_pred) if isinstance(y_pred, (np.ndarray, list, tuple)) else None
    if arr is None or arr.dtype.kind not in "iuf":
        raise TypeError(f"{loss}: y_pred (the first argument, the model's output) must be an ember Tensor or a "
                        f"NumPy array of numbers, got {type(y_pred).__name__}")
    return Tensor(arr if arr.dtype.kind == "f" else arr.astype(np.float32))


def _reduction(value, loss) -> str:
    if not isinstance(value, (str, type(None))) or value not in _REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be one of 'sum_over_batch_size', 'mean', 'sum', 'none' or None, "
                         f"got {value!r}")
    return value


def _probabilities(y_pred, loss):
    """``y_pred`` checked to hold probabilities, normalised per row and clipped as Keras does."""
    data = y_pred._data
    if data.size and (bool((data < 0).any()) or bool((data > 1).any())):
        raise ValueError(f"{loss}: the model's outputs are not probabilities (values outside [0, 1]); end the model "
                         f"with a softmax, or pass from_logits=True if it returns logits")
    p = y_pred / y_pred.sum(1, keepdim=True)
    return p.clamp(_EPSILON, 1 - _EPSILON)


class CategoricalCrossentropy(Module):
    """Cross-entropy against one-hot or probability targets (N, C), called as
    ``loss(y_pred, y_true)``. ``reduction``: Keras's 'sum_over_batch_size' (the batch's mean,
    also 'mean'), 'sum', or 'none' / None (the per-sample losses)."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, reduction="sum_over_batch_size"):
        super().__init__()
        smoothing = real(label_smoothing, f"{type(self).__name__}: label_smoothing")
        if not (math.isfinite(smoothing) and 0 <= smoothing <= 1):
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.from_logits, self.label_smoothing = bool(from_logits), smoothing
        self.reduction = _reduction(reduction, type(self).__name__)

    def forward(self, y_pred, y_true):
        y_pred = _prediction(y_pred, self.name)
        t = _values(y_true)
        if t.ndim != 2 or tuple(t.shape) != tuple(y_pred.shape):
            raise ValueError(f"{self.name} takes one-hot or probability targets of the outputs' shape "
                             f"{tuple(y_pred.shape)}, got shape {tuple(t.shape)}; for class indices use "
                             "sparse_categorical_crossentropy, or one-hot them with ember.keras.utils.to_categorical")
        if t.dtype != y_pred.dtype:
            t = t.astype(y_pred.dtype)
        reduction = _REDUCTIONS[_reduction(self.reduction, self.name)]
        if self.from_logits:
            return F.cross_entropy(y_pred, t, label_smoothing=self.label_smoothing, reduction=reduction)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / t.shape[1]
        per_sample = -(Tensor(t) * _probabilities(y_pred, self.name).log()).sum(1)
        if reduction == "none":
            return per_sample
        return per_sample.sum() if reduction == "sum" else per_sample.mean()


class SparseCategoricalCrossentropy(Module):
    """Cross-entropy against class indices, (N,) or (N, 1), called as ``loss(y_pred, y_true)``;
    ``reduction`` as ``CategoricalCrossentropy``'s."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_index: int = -100, reduction="sum_over_batch_size"):
        super().__init__()
        self.from_logits, self.ignore_index = bool(from_logits), ignore_index
        self.reduction = _reduction(reduction, type(self).__name__)

    def forward(self, y_pred, y_true):
        y_pred = _prediction(y_pred, self.name)
        t = _values(y_true)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t.reshape(-1)
        if t.ndim != 1 or t.dtype.kind not in "iu":
            raise ValueError(f"{self.name} takes integer class indices of shape (N,) or (N, 1), got {t.dtype} of "
                             f"shape {tuple(t.shape)}; for one-hot or probability targets use categorical_crossentropy")
        reduction = _REDUCTIONS[_reduction(self.reduction, self.name)]
        if self.from_logits:
            return F.cross_entropy(y_pred, t, ignore_index=self.ignore_index, reduction=reduction)
        return F.nll_loss(_probabilities(y_pred, self.name).log(), t, ignore_index=self.ignore_index,
                          reduction=reduction)


def _keras_order(y_true, loss) -> None:
    if isinstance(y_true, Tensor) and y_true.requires_grad:
        raise TypeError(f"{loss} takes (y_true, y_pred), Keras's order, and returns per-sample losses, but y_true "
                        f"requires grad: a model's output, passed first as compile's losses are; for compile(loss=...) "
                        f"give the name '{loss}' or a loss object")


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0) -> Tensor:
    """Keras's function, in Keras's order: the per-sample losses (N,) of ``y_pred`` against
    one-hot or probability targets ``y_true``."""
    _keras_order(y_true, "categorical_crossentropy")
    return CategoricalCrossentropy(from_logits, label_smoothing, reduction="none")(y_pred, y_true)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False) -> Tensor:
    """Keras's function, in Keras's order: the per-sample losses (N,) of ``y_pred`` against
    class indices ``y_true``, (N,) or (N, 1)."""
    _keras_order(y_true, "sparse_categorical_crossentropy")
    return SparseCategoricalCrossentropy(from_logits, reduction="none")(y_pred, y_true)


KERAS_LOSSES = {"categorical_crossentropy": CategoricalCrossentropy,
                "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}

__all__ = ["CategoricalCrossentropy", "SparseCategoricalCrossentropy", "categorical_crossentropy",
           "sparse_categorical_crossentropy"]
