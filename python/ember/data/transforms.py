"""Batch transforms: vectorised over a whole batch of images, no Python loop over samples.

Each transform is called as ``t(x, rng=None)`` with ``x`` a NumPy batch whose first axis is
the sample axis (images are ``(N, C, H, W)``) and returns a new array (the input is never
modified). Random transforms draw from ``rng`` (a ``np.random.Generator``; ``DataLoader``
passes one per batch) or, when it is None, from ember's default generator.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..factories import Generator, default_generator


def _generator(rng) -> np.random.Generator:
    if rng is None:
        return default_generator().numpy
    if isinstance(rng, Generator):
        return rng.numpy
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, an ember.Generator or None, got {type(rng).__name__}")
    return rng


def _check_batch(x, who: str, min_ndim: int, layout: str) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{who} expects a NumPy array batch, got {type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(f"{who} expects a batch of shape {layout}, got shape {x.shape}")


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints, each >= 0, as a pair."""
    try:
        pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    except TypeError:  # not iterable: a float, None...
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < 0 for v in pair):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(pair[0]), int(pair[1])


class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms):
        if callable(transforms) or not hasattr(transforms, "__iter__"):
            raise TypeError(f"Compose takes a list of transforms, got {type(transforms).__name__}")
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {i} is not callable: {t!r}")

    def __call__(self, x, rng=None):
        rng = _generator(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        body = "".join(f"    {t!r},\n" for t in self.transforms)
        return f"Compose(\n{body})" if body else "Compose([])"


class ToFloat:
    """Convert to floating point and scale: ``x.astype(dtype) * scale``.

    The default maps uint8 pixels 0..255 to 0..1; use ``ToFloat(1 / 16)`` for the digits set
    (values 0..16).
    """

    def __init__(self, scale=1 / 255, dtype=np.float32):
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"ToFloat: scale must be a finite number > 0, got {scale!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"ToFloat: dtype must be a floating-point type, got {self.dtype}")
        self.scale = float(scale)

    def __call__(self, x, rng=None):
        _check_batch(x, "ToFloat", 0, "(...)")
        out = x.astype(self.dtype)
        out *= self.dtype.type(self.scale)
        return out

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale:g}, dtype={self.dtype})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]`` on a floating-point batch ``(N, C, ...)``.

    ``mean`` and ``std`` are sequences with one value per channel (or a single value for all
    channels); every ``std`` must be > 0.
    """

    def __init__(self, mean, std):
        self.mean = self._values(mean, "mean")
        self.std = self._values(std, "std")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be > 0, got {self.std.tolist()}")

    @staticmethod
    def _values(values, name: str) -> np.ndarray:
        try:
            arr = np.atleast_1d(np.asarray(values))
        except (TypeError, ValueError):  # ragged
            arr = None
        if arr is None or arr.dtype.kind not in "iuf":  # None, strings, mixed objects
            raise TypeError(f"Normalize: {name} must be a number or a sequence of numbers, got {values!r}")
        arr = arr.astype(np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"Normalize: {name} must be a number or a flat sequence of numbers, got {values!r}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"Normalize: {name} must be finite, got {arr.tolist()}")
        return arr

    def __call__(self, x, rng=None):
        _check_batch(x, "Normalize", 2, "(N, C, ...)")
        if x.dtype.kind != "f":
            raise TypeError(f"Normalize needs a floating-point batch, got dtype {x.dtype}; put ToFloat() before it")
        channels = max(len(self.mean), len(self.std))
        if channels not in (1, x.shape[1]):
            raise ValueError(f"Normalize: mean/std have {channels} channels but the batch of shape {x.shape} "
                             f"has {x.shape[1]} on axis 1")
        bshape = (-1,) + (1,) * (x.ndim - 2)
        mean = self.mean.astype(x.dtype).reshape(bshape)
        std = self.std.astype(x.dtype).reshape(bshape)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _borders(value, name: str) -> tuple[int, int, int, int]:
    """torchvision's padding, each >= 0, as (left, top, right, bottom): an int pads every border,
    a pair (left and right, top and bottom), four (left, top, right, bottom); a sequence of one is
    an int, and None no padding."""
    if value is None:
        return 0, 0, 0, 0
    try:
        pads = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    except TypeError:  # not iterable: a float, None...
        pads = ()
    if len(pads) not in (1, 2, 4) or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pads):
        raise TypeError(f"{name} must be an int or a sequence of 1, 2 or 4 ints (as torchvision's), got {value!r}")
    if any(v < 0 for v in pads):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return tuple(int(v) for v in pads * (4 // len(pads)))


class RandomCrop:
    """Pad each image by ``padding`` with ``fill``, then crop ``size`` at a random offset per sample.

    ``size`` is an int (square) or ``(height, width)``; ``padding`` is torchvision's: an int pads
    every border of the last two axes (height, width) by that much, a pair ``(left/right,
    top/bottom)`` pads the left and right borders by the first and the top and bottom by the
    second, four ``(left, top, right, bottom)`` each border by its own; ``padding`` keeps that
    4-tuple. ``fill`` is the constant the padding holds. Works on any ``(N, ..., H, W)`` batch.
    Offsets are drawn top first, then left, each with ``rng.integers(0, room + 1, size=N)``; the
    crop is a single gather from a sliding-window view.
    """

    def __init__(self, size, padding=0, fill=0):
        self.size = _pair(size, "RandomCrop: size")
        if 0 in self.size:
            raise ValueError(f"RandomCrop: size must be >= 1, got {size!r}")
        self.padding = _borders(padding, "RandomCrop: padding")
        if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
            raise TypeError(f"RandomCrop: fill must be a number, got {fill!r}")
        if not isinstance(fill, numbers.Integral) and not np.isfinite(fill):
            raise ValueError(f"RandomCrop: fill must be finite, got {fill!r}")
        self.fill = fill

    def __call__(self, x, rng=None):
        _check_batch(x, "RandomCrop", 3, "(N, ..., H, W)")
        rng = _generator(rng)
        (h, w), (left, top, right, bottom) = self.size, self.padding
        if any(self.padding):
            self._check_fill(x.dtype)
            pad = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
            x = np.pad(x, pad, mode="constant", constant_values=self.fill)
        height, width = x.shape[-2:]
        if h > height or w > width:
            raise ValueError(f"RandomCrop: crop size {(h, w)} is larger than the padded image {(height, width)}")
        n = x.shape[0]
        top = rng.integers(0, height - h + 1, size=n)
        left = rng.integers(0, width - w + 1, size=n)
        windows = np.lib.stride_tricks.sliding_window_view(x, (h, w), axis=(-2, -1))
        return windows[np.arange(n), ..., top, left, :, :]

    def _check_fill(self, dtype: np.dtype) -> None:
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if self.fill != int(self.fill) or not info.min <= self.fill <= info.max:
                raise ValueError(f"RandomCrop: fill={self.fill!r} is not representable in the batch's dtype {dtype}")

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill!r})"


class RandomHorizontalFlip:
    """Mirror each sample along its last (width) axis with probability ``p``, independently.

    Which samples flip is ``rng.random(N) < p``.
    """

    def __init__(self, p=0.5):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x, rng=None):
        _check_batch(x, "RandomHorizontalFlip", 2, "(N, ..., W)")
        flip = _generator(rng).random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip, ..., ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p:g})"
