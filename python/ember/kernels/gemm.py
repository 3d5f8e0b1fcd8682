"""GEMM: ``out = act(alpha * op(a) @ op(b) + beta * out + bias)``, and ``matmul`` on top of it;
bf16 <-> float32 conversion.

On the CPU the kernel reads any strided view in place (transposed, sliced, negative or zero
strides); a device whose kernel needs one unit stride gets a contiguous copy of an input that
has none. ``a`` and ``b`` are float32, or both bf16 (``ml_dtypes.bfloat16``: AMX tiles or
``vdpbf16ps`` where the CPU has them, the products summed in float32); ``out`` is float32.

bf16 products are exact, with one exception: on the ``avx512_bf16`` and ``amx`` paths a
subnormal bf16 input (magnitude below 2^-126, about 1.2e-38) counts as zero, as ``vdpbf16ps``
and the AMX tiles treat it -- and as oneDNN's bf16 matmuls, PyTorch's among them, do on such
CPUs. The ``generic``, ``avx2`` and ``avx512`` paths (the float32 GEMM on widened inputs) and
``gemm_ref`` keep subnormals.
"""

from __future__ import annotations

import itertools

from .. import _check
from . import _common

_F32 = (_common.FLOAT32,)


def _operand(dev, x):
    """x as the device's GEMM reads it: in place on the CPU; elsewhere copied unless one of its
    strides is the unit one (rows or columns contiguous, the other stride positive)."""
    if dev.strided_gemm:
        return x
    s0, s1 = x.strides
    if (s1 == x.itemsize and s0 > 0) or (s0 == x.itemsize and s1 > 0) or x.size == 0:
        return x
    return dev.xp.ascontiguousarray(x)


def _input(x, name, dev):
    """A 2-D float32 or bf16 operand of ``dev``."""
    return _common.array(x, name, dev, (x.dtype,) if _common.is_bf16(x) else _F32, 2)


def gemm(a, b, *, out=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None, relu=False,
         reference=False):
    """``out = act(alpha * op(a) @ op(b) + beta * out + bias)``: ``a`` and ``b`` float32, or both
    bf16 (``ml_dtypes.bfloat16``; the products are exact and summed in float32, except that
    subnormal bf16 inputs count as zero on the ``avx512_bf16`` and ``amx`` paths: see the
    module's notes), the rest float32.

    ``op(x)`` is ``x.T`` when ``trans_x``; ``bias`` has one value per column; ``act`` is ReLU
    (NaN propagates) when ``relu``. ``out`` (M x N, unit column stride, not sharing memory with
    an input) is written in place and returned; without it a new array is returned, and
    ``beta != 0`` is an error. With ``beta == 0`` the old contents of ``out`` are never read.
    ``reference=True`` runs the plain-loop reference (double accumulation). Wrong dtypes raise
    TypeError, wrong shapes or layouts ValueError. The GIL is released while the kernel runs.
    """
    dev = _common.device(a=a, b=b, out=out, bias=bias)
    alpha, beta = _check.real(alpha, "alpha"), _check.real(beta, "beta")
    if _common.is_bf16(a) != _common.is_bf16(b):
        raise TypeError(f"a and b must both be float32 or both bf16, got {getattr(a, 'dtype', type(a).__name__)} and "
                        f"{getattr(b, 'dtype', type(b).__name__)}")
    a = _operand(dev, _input(a, "a", dev))
    b = _operand(dev, _input(b, "b", dev))
    if bias is not None:
        bias = _common.array(bias, "bias", dev, _F32, 1, contiguous=not dev.strided_gemm)
    if out is None:
        if beta != 0.0:
            raise ValueError(f"beta is {beta:g} but out is None: beta scales the existing out, pass out=")
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        out = dev.empty((m, n), _common.FLOAT32)
    else:
        out = _common.array(out, "out", dev, _F32, 2)
    k = _common.native(dev, "gemm_ref" if reference else "gemm")
    # Positional: the binding parses them in half the time keywords take.
    k(a, b, out, alpha, beta, bool(trans_a), bool(trans_b), bias, bool(relu), **dev.launch())
    return out


def gemm_ref(a, b, **kwargs):
    """The reference :func:`gemm` (plain loops, double accumulation), the oracle the fast paths
    are tested against. Same arguments and checks."""
    return gemm(a, b, reference=True, **kwargs)


def matmul(a, b, out=None):
    """Matrix product with ``numpy.matmul``'s rules, on Ember's GEMM.

    1-D operands are promoted (a vector ``a`` becomes a row, a vector ``b`` a column) and the
    added dimension is removed from the result; leading dimensions are batch dimensions and
    broadcast. Operands must be float32 arrays of one device; views are read in place.
    """
    dev = _common.device(a=a, b=b, out=out)
    xp = dev.xp
    a = _common.array(a, "a", dev, _F32)
    b = _common.array(b, "b", dev, _F32)
    for name, x in (("a", a), ("b", b)):
        if x.ndim == 0:
            raise ValueError(f"matmul: {name} must be at least 1-D, got a 0-d array")
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(
            f"matmul: inner dimensions differ: a has shape {a.shape} (K={a2.shape[-1]}) "
            f"but b has shape {b.shape} (K={b2.shape[-2]})"
        )
    try:
        batch = _common.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions do not broadcast: a has shape {a.shape}, b has shape {b.shape}"
        ) from None
    m, n = a2.shape[-2], b2.shape[-1]
    full_shape = batch + (m, n)
    shape = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())

    if out is None:
        result = dev.empty(full_shape, _common.FLOAT32)
    else:
        out = _common.array(out, "out", dev, _F32)
        if out.shape != shape:
            raise ValueError(f"matmul: out must have shape {shape}, got {out.shape}")
        if xp.may_share_memory(out, a) or xp.may_share_memory(out, b):
            raise ValueError("matmul: out must not share memory with a or b")
        if _common.overlaps_itself(out):
            raise ValueError(f"matmul: out must not overlap itself, got strides {out.strides} for shape {out.shape}")
        result = out.reshape(full_shape) if out.shape != full_shape else out
        if not xp.may_share_memory(result, out):
            raise ValueError("matmul: out cannot be viewed with the result's 2-D layout")

    if batch:
        ab = xp.broadcast_to(a2, batch + a2.shape[-2:])
        bb = xp.broadcast_to(b2, batch + b2.shape[-2:])
        for idx in itertools.product(*(range(d) for d in batch)):
            gemm(ab[idx], bb[idx], out=result[idx])
    else:
        gemm(a2, b2, out=result)

    if out is not None:
        return out
    if result.shape != shape:
        result = result.reshape(shape)
    return result


def convert_bf16(x, out=None):
    """``x`` converted between float32 and bf16 (``ml_dtypes.bfloat16``): float32 to bf16 rounds
    to nearest even (NaN stays NaN, made quiet; a value past bf16's range becomes infinite),
    bf16 to float32 is exact. ``out``, when given, is a C-contiguous array of the other dtype
    and ``x``'s shape."""
    dev = _common.device(x=x, out=out)
    to_bf16 = not _common.is_bf16(x)
    x = _common.array(x, "x", dev, _F32 if to_bf16 else (x.dtype,), contiguous=True)
    want = _common.bfloat16() if to_bf16 else _common.FLOAT32
    if out is None:
        out = dev.empty(x.shape, want)
    else:
        out = _common.array(out, "out", dev, (want,))
    _common.native(dev, "convert_bf16")(x, out)
    return out
