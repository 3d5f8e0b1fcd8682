"""Native kernels as functions over arrays.

``gemm`` and ``gemm_ref`` take float32 NumPy arrays and read any strides in place
(transposed and sliced views are never copied). ``matmul`` follows ``numpy.matmul``'s
shape rules on top of ``gemm``.
"""

from __future__ import annotations

import numpy as np

from . import _C

def gemm(a, b, *, out=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None, relu=False):
    """``out = act(alpha * op(a) @ op(b) + beta * out + bias)`` on float32 NumPy arrays.

    ``op(x)`` is ``x.T`` when ``trans_x``; ``bias`` has one value per column; ``act`` is ReLU
    (NaN propagates) when ``relu``. Inputs may have any strides — transposed, sliced, negative
    or zero — and are read in place. ``out`` (M x N, unit column stride, not sharing memory with
    an input) is written in place and returned; without it a new array is returned, and
    ``beta != 0`` is an error. With ``beta == 0`` the old contents of ``out`` are never read.
    Wrong dtypes raise TypeError, wrong shapes or layouts ValueError. The GIL is released while
    the kernel runs.
    """
    return _C.gemm(a, b, out, alpha, beta, trans_a, trans_b, bias, relu)


def gemm_ref(a, b, *, out=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None, relu=False):
    """The reference GEMM (plain loops, double accumulation), the oracle the fast paths are tested
    against. Same arguments and checks as :func:`gemm`."""
    return _C.gemm_ref(a, b, out, alpha, beta, trans_a, trans_b, bias, relu)


def _as_f32(x, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"matmul: {name} must have at least 1 dimension, got a 0-d array")
    return x


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Matrix product with ``numpy.matmul``'s rules, on Ember's GEMM.

    1-D operands are promoted (a vector ``a`` becomes a row, a vector ``b`` a column) and the
    added dimension is removed from the result; leading dimensions are batch dimensions and
    broadcast. Operands must be float32; views are read in place.
    """
    a = _as_f32(a, "a")
    b = _as_f32(b, "b")
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(
            f"matmul: inner dimensions differ: a has shape {a.shape} (K={a2.shape[-1]}) "
            f"but b has shape {b.shape} (K={b2.shape[-2]})"
        )
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions do not broadcast: a has shape {a.shape}, b has shape {b.shape}"
        ) from None
    m, n = a2.shape[-2], b2.shape[-1]
    full_shape = batch + (m, n)
    shape = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())

    if out is None:
        result = np.empty(full_shape, dtype=np.float32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise TypeError("matmul: out must be a numpy.ndarray of float32")
        if out.shape != shape:
            raise ValueError(f"matmul: out must have shape {shape}, got {out.shape}")
        result = out.reshape(full_shape) if out.shape != full_shape else out
        if not np.may_share_memory(result, out):
            raise ValueError("matmul: out cannot be viewed with the result's 2-D layout")

    if batch:
        ab = np.broadcast_to(a2, batch + a2.shape[-2:])
        bb = np.broadcast_to(b2, batch + b2.shape[-2:])
        for idx in np.ndindex(*batch):
            gemm(ab[idx], bb[idx], out=result[idx])
    else:
        gemm(a2, b2, out=result)

    if out is not None:
        return out
    result = result.reshape(shape)
    return result[()] if result.ndim == 0 else result
