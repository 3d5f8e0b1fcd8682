"""Keras's classification losses with Keras's meanings, for ``compile(loss=...)``.

``categorical_crossentropy`` takes one-hot or probability targets of shape (N, C);
``sparse_categorical_crossentropy`` takes class indices, (N,) or Keras's (N, 1). Both read the
model's output as probabilities unless ``from_logits=True``, as Keras does; a model whose
last layer is a softmax is trained on the logits before it (``ember.keras.Sequential`` does
this by itself), so the loss runs on Ember's fused softmax cross-entropy either way.
Probabilities outside [0, 1] are refused: they are logits given to a loss told otherwise.
"""

from __future__ import annotations

import numpy as np

from .nn import Module
from .nn import functional as F
from .tensor import Tensor

_EPSILON = 1e-7  # Keras's clip of probabilities before the logarithm


def _values(y):
    return y._data if isinstance(y, Tensor) else np.asarray(y)


def _probabilities(y_pred, loss):
    """``y_pred`` checked to hold probabilities, normalised per row and clipped as Keras does."""
    data = y_pred._data
    if data.size and (bool((data < 0).any()) or bool((data > 1).any())):
        raise ValueError(f"{loss}: the model's outputs are not probabilities (values outside [0, 1]); end the model "
                         f"with a softmax, or pass from_logits=True if it returns logits")
    p = y_pred / y_pred.sum(1, keepdim=True)
    return p.clamp(_EPSILON, 1 - _EPSILON)


class CategoricalCrossentropy(Module):
    """Cross-entropy against one-hot or probability targets (N, C)."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        super().__init__()
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def forward(self, y_pred, y_true):
        t = _values(y_true)
        if t.ndim != 2 or tuple(t.shape) != tuple(y_pred.shape):
            raise ValueError(f"{self.name} takes one-hot or probability targets of the outputs' shape "
                             f"{tuple(y_pred.shape)}, got shape {tuple(t.shape)}; for class indices use "
                             "sparse_categorical_crossentropy, or one-hot them with ember.keras.utils.to_categorical")
        if t.dtype != y_pred.dtype:
            t = t.astype(y_pred.dtype)
        if self.from_logits:
            return F.cross_entropy(y_pred, t, label_smoothing=self.label_smoothing)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / t.shape[1]
        return -(Tensor(t) * _probabilities(y_pred, self.name).log()).sum(1).mean()


class SparseCategoricalCrossentropy(Module):
    """Cross-entropy against class indices, (N,) or (N, 1)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_index: int = -100):
        super().__init__()
        self.from_logits, self.ignore_index = bool(from_logits), ignore_index

    def forward(self, y_pred, y_true):
        t = _values(y_true)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t.reshape(-1)
        if t.ndim != 1 or t.dtype.kind not in "iu":
            raise ValueError(f"{self.name} takes integer class indices of shape (N,) or (N, 1), got {t.dtype} of "
                             f"shape {tuple(t.shape)}; for one-hot or probability targets use categorical_crossentropy")
        if self.from_logits:
            return F.cross_entropy(y_pred, t, ignore_index=self.ignore_index)
        return F.nll_loss(_probabilities(y_pred, self.name).log(), t, ignore_index=self.ignore_index)


KERAS_LOSSES = {"categorical_crossentropy": CategoricalCrossentropy,
                "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}

__all__ = ["CategoricalCrossentropy", "SparseCategoricalCrossentropy"]
