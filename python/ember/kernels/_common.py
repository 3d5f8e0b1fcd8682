"""Checks shared by the kernel doors: every one names the argument it refuses."""

from __future__ import annotations

import numpy as np

from .. import backend

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
FLOATS = (FLOAT32, FLOAT64)


def is_bf16(x) -> bool:
    """Whether ``x`` is an array of bf16 (``ml_dtypes.bfloat16``) or that dtype, told without
    importing ml_dtypes."""
    dtype = x if isinstance(x, np.dtype) else getattr(x, "dtype", None)
    return dtype is not None and dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def bfloat16() -> np.dtype:
    """NumPy's bf16 dtype, from ml_dtypes (imported on first use, so that ``import ember`` does not)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)
broadcast_shapes = np.broadcast_shapes  # shape arithmetic only: no arrays involved


def device(**arrays) -> backend.Device:
    """The one device of the named arrays (None skipped); arrays of two devices are a
    ValueError naming both."""
    found = None
    for name, a in arrays.items():
        if a is None:
            continue
        dev = backend.device_of(a)
        if found is None:
            found, first = dev, name
        elif dev is not found:
            raise ValueError(f"{first} is on device '{found.name}' but {name} is on device '{dev.name}'; "
                             "move them to one device first")
    return found if found is not None else backend.CPU


_LAYOUTS = {4: " (N, C, H, W)"}
_KINDS = {"cpu": "numpy.ndarray"}


def array(x, name: str, dev: backend.Device, dtypes=FLOATS, ndim=None, contiguous=False, layout=""):
    """``x`` checked: an array of ``dev`` (not a list or a scalar), of one of ``dtypes``, with
    ``ndim`` dimensions (an int or a tuple of allowed counts); made C-contiguous when asked
    (a copy only if it is not, or if its elements are misaligned: inputs only; the shape kept,
    0-d included)."""
    if not isinstance(x, dev.array_types):
        kind = _KINDS.get(dev.name, f"array on device '{dev.name}'")
        raise TypeError(f"{name} must be a {kind} of {' or '.join(str(d) for d in dtypes)}, got {type(x).__name__}")
    if x.dtype not in dtypes:
        wanted = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype {wanted}, got {x.dtype}")
    if ndim is not None and x.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must be {ndim}-D{layout or _LAYOUTS.get(ndim, '')}, got shape {tuple(x.shape)}")
    if contiguous and not (x.flags.c_contiguous and getattr(x.flags, "aligned", True)):
        return dev.xp.array(x, order="C", copy=True)
    return x


def overlaps_itself(x) -> bool:
    """Whether two elements of ``x`` may share memory (a zero stride, or strides that interleave):
    the dimensions sorted by stride, each must step past all the smaller ones span."""
    if x.size == 0:
        return False
    span = x.itemsize
    for size, stride in sorted(((n, abs(s)) for n, s in zip(x.shape, x.strides) if n > 1), key=lambda d: d[1]):
        if stride < span:
            return True
        span += (size - 1) * stride
    return False


def same_dtype(reference, **arrays) -> None:
    """Every named array (None skipped) has ``reference``'s dtype."""
    for name, a in arrays.items():
        if a is not None and a.dtype != reference.dtype:
            raise TypeError(f"{name} must have dtype {reference.dtype} like the input, got {a.dtype}")


def native(dev: backend.Device, name: str):
    """The kernel ``name`` of ``dev``, or NotImplementedError saying that device has none."""
    fn = getattr(dev.kernels, name, None)
    if fn is None:
        raise NotImplementedError(f"{name} has no kernel on device '{dev.name}' in this version of Ember; "
                                  "run this op on the CPU")
    return fn


def kernel(dev: backend.Device, name: str, reference: bool, dtype):
    """The kernel ``name`` of ``dev``: its reference twin when asked or for float64 data (the
    fast kernels are float32)."""
    return native(dev, f"{name}_ref" if reference or dtype == FLOAT64 else name)
