"""Keras's ``utils.to_categorical``."""

from __future__ import annotations

import numpy as np


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """One-hot rows of the class indices ``y`` (a trailing axis of 1, as Keras's (N, 1) labels
    have, is dropped when ``y`` has more than one axis, so ``[2]`` gives shape (1, C)): shape
    ``y.shape + (num_classes,)``, ``num_classes`` defaulting to the largest label + 1."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y) & (y == np.floor(y))):
            raise ValueError(f"to_categorical: y must hold integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: y holds the negative class {int(y.min())}")
    top = int(y.max()) + 1 if y.size else 0
    if num_classes is None:
        num_classes = top
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive int, got {num_classes!r}")
    elif top > num_classes:
        raise ValueError(f"to_categorical: y holds the class {top - 1} but num_classes is {num_classes}")
    out = np.zeros(y.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, y[..., None].astype(np.intp), 1, axis=-1)
    return out
