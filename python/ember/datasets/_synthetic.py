"""A synthetic, learnable classification set."""

from __future__ import annotations

import numbers

import numpy as np


def synthetic(n, shape=(3, 32, 32), classes=10, seed=0, dtype=np.float32):
    """``n`` random samples of ``shape`` in ``classes`` classes, for smoke tests and benchmarks.

    Each class has its own mean pattern drawn from N(0, 1) per element; a sample is its class's
    mean plus N(0, 1) noise, so the classes are separable and a model can learn them. Labels are
    balanced (``n // classes`` or one more per class) and shuffled. Everything is drawn in
    float32 from ``np.random.default_rng(seed)`` and then cast to ``dtype``, so the values for a
    seed do not depend on ``dtype``.

    Returns ``(x, y)``: ``x`` of shape ``(n, *shape)`` and ``dtype``, ``y`` int64 in ``0 .. classes - 1``.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"synthetic: n must be an integer >= 1, got {n!r}")
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
        raise ValueError(f"synthetic: shape must be a non-empty tuple of integers >= 1, got {shape!r}")
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 2:
        raise ValueError(f"synthetic: classes must be an integer >= 2, got {classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"synthetic: seed must be an integer >= 0, got {seed!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"synthetic: dtype must be a floating-point type, got {dtype}")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, *shape), dtype=np.float32)
    y = rng.permutation(np.arange(n, dtype=np.int64) % classes)
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    x += means[y]
    return x.astype(dtype, copy=False), y
