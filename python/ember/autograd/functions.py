"""The differentiable ops of arithmetic and reductions, one Function each, backward beside
forward; ``shape_functions`` holds the ops that move elements, ``nn_functions`` those of neural
networks (activations, convolution, pooling, cross-entropy, linear layers).

Forwards work on arrays with NumPy's broadcasting rules, in the inputs' own array namespace
(``xp``: NumPy on the CPU, CuPy on CUDA; found through ``ember.backend``), so the same code runs
on every device; a backward returns each input's gradient summed back down to that input's
shape (``unbroadcast``). Matrix products, convolution, pooling, cross-entropy and large ReLUs
run on Ember's kernels through the doors of ``ember.kernels``.

Class names end in ``Fn`` (``Conv2dFn``), so that they cannot be mistaken for the layers of
``ember.nn``; their graph nodes are named without it (``Conv2dBackward``).
"""

from __future__ import annotations

import math

from .. import backend
from ..kernels import gemm
from ..kernels._common import FLOAT32
from .function import Function, owned

_xp = backend.namespace
_xps = backend.namespace_of


def unbroadcast(g, shape):
    """Sum g over the axes broadcasting added or stretched, to the input's shape."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _axes(dim, ndim):
    """The axes a reduction over ``dim`` (an int, a sequence of ints, or None) covers: every one
    for None or an empty sequence, as PyTorch reduces over all dims for ``dim=()``."""
    dims = () if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        return tuple(range(ndim))
    if ndim == 0:  # a 0-d tensor has the one dim 0 (or -1), over which reducing changes nothing
        for d in dims:
            if d not in (0, -1):
                raise IndexError(f"dim {d} is out of range for a tensor of 0 dimensions (expected 0 or -1)")
        return ()
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
        out.append(d % ndim)
    return tuple(out)


def _count(shape, axes) -> int:
    return math.prod(shape[i] for i in axes)


def _native(a) -> bool:
    """Whether elementwise work on array ``a`` goes to the device's kernel: float32 or float64,
    C-contiguous, and large enough that the native call's fixed cost does not dominate."""
    dev = backend.device_of(a)
    return a.dtype.kind == "f" and a.itemsize in (4, 8) and a.nbytes >= dev.native_min_bytes and \
        a.flags.c_contiguous


# ----------------------------------------------------------------------- arithmetic
# Operands are arrays or NumPy scalars (Tensor turns Python numbers into scalars of its dtype),
# so each has a .shape; a gradient is computed only where needed.


class AddFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return backend.add(a, b)

    @staticmethod
    def backward(ctx, g):
        need = ctx.needs_input_grad
        return (unbroadcast(g, ctx.shapes[0]) if need[0] else None,
                unbroadcast(g, ctx.shapes[1]) if need[1] else None)


class SubFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        need = ctx.needs_input_grad
        return (unbroadcast(g, ctx.shapes[0]) if need[0] else None,
                unbroadcast(-g, ctx.shapes[1]) if need[1] else None)


class MulFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (unbroadcast(g * b, a.shape) if need[0] else None,
                unbroadcast(g * a, b.shape) if need[1] else None)


class DivFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (unbroadcast(g / b, a.shape) if need[0] else None,
                unbroadcast(-g * a / (b * b), b.shape) if need[1] else None)


# A Python number on one side (already a NumPy scalar of the tensor's dtype): nothing is saved,
# so these record less than the general ops (their nodes carry the general ops' names); tensor.py
# routes number operands here. a - c is a + (-c) exactly.


class AddScalarFn(Function):
    grad_name = "Add"

    @staticmethod
    def forward(ctx, a, c):
        return a + c

    @staticmethod
    def backward(ctx, g):
        return g, None


class RSubScalarFn(Function):
    """c - a."""

    grad_name = "Sub"

    @staticmethod
    def forward(ctx, a, c):
        return c - a

    @staticmethod
    def backward(ctx, g):
        return -g, None


class MulScalarFn(Function):
    grad_name = "Mul"

    @staticmethod
    def forward(ctx, a, c):
        ctx.c = c
        return a * c

    @staticmethod
    def backward(ctx, g):
        return g * ctx.c, None


class DivScalarFn(Function):
    """a / c."""

    grad_name = "Div"

    @staticmethod
    def forward(ctx, a, c):
        ctx.c = c
        return a / c

    @staticmethod
    def backward(ctx, g):
        return g / ctx.c, None


class NegFn(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class PowFn(Function):
    """a ** b, either a tensor; d/db uses log(a), defined for a > 0."""

    @staticmethod
    def forward(ctx, a, b):
        y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        ga = gb = None
        xp = _xps(a, g)
        zero = g.dtype.type(0)
        with backend.device_of(g).errstate(divide="ignore", invalid="ignore"):
            if ctx.needs_input_grad[0]:  # x ** 0 is constant: its derivative is 0 at x = 0 too
                ga = unbroadcast(xp.where(b == 0, zero, g * b * a ** (b - 1)), a.shape)
            if ctx.needs_input_grad[1]:  # 0 ** b for b >= 0 is 0 or 1 as b moves: derivative 0
                gb = unbroadcast(xp.where((a == 0) & (b >= 0), zero, g * y * xp.log(a)), b.shape)
        return ga, gb


class ExpFn(Function):
    @staticmethod
    def forward(ctx, a):
        y = _xp(a).exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class LogFn(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class SqrtFn(Function):
    """sqrt(a); with ``zero_at_zero`` its gradient is 0 where the root is 0 (a standard
    deviation's, as PyTorch's std) instead of infinite."""

    @staticmethod
    def forward(ctx, a, zero_at_zero=False):
        y = _xp(a).sqrt(a)
        ctx.save_for_backward(y)
        ctx.zero_at_zero = zero_at_zero
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if ctx.zero_at_zero:
            with backend.device_of(g).errstate(divide="ignore", invalid="ignore"):
                return _xp(g).where(y == 0, g.dtype.type(0), g / (2 * y))
        return g / (2 * y)


class AbsFn(Function):
    """|a|; its gradient is g times the sign of a, which is 0 at 0 and at NaN (as PyTorch's)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * ((a > 0).astype(g.dtype) - (a < 0).astype(g.dtype))


# ----------------------------------------------------------------------- products, comparisons and reductions


class SumFn(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.axes, ctx.keepdim = a.shape, _axes(dim, a.ndim), keepdim
        xp = _xp(a)
        return xp.asarray(xp.sum(a, axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        if not ctx.keepdim:
            g = xp.expand_dims(g, ctx.axes)
        return xp.broadcast_to(g, ctx.shape).copy()


class MeanFn(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.axes, ctx.keepdim = a.shape, _axes(dim, a.ndim), keepdim
        ctx.count = _count(ctx.shape, ctx.axes)
        xp = _xp(a)
        with backend.device_of(a).errstate(invalid="ignore", divide="ignore"):
            return xp.asarray(xp.mean(a, axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        if not ctx.keepdim:
            g = xp.expand_dims(g, ctx.axes)
        return xp.broadcast_to(g / max(ctx.count, 1), ctx.shape).copy()


class MatMulFn(Function):
    """a @ b with NumPy's matmul rules (1-D, batched, broadcast batch dims)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return matmul_arrays(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = _xp(g)
        # A 1-D operand is a one-row (a) or one-column (b) matrix whose dim the product dropped:
        # put the dims back into g, b's last (g is 0-d when both are 1-D).
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(matmul_arrays(g2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(matmul_arrays(xp.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return ga, gb


def matmul_arrays(a, b):
    if a.dtype == FLOAT32 and b.dtype == FLOAT32 and a.ndim >= 1 and b.ndim >= 1:
        return gemm.matmul(a, b)
    return _xps(a, b).matmul(a, b)


class CastFn(Function):
    """``a`` as another floating dtype; the gradient goes back in ``a``'s dtype."""

    @staticmethod
    def forward(ctx, a, dtype=None):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype)


class ClampFn(Function):
    """a limited to [lo, hi], each a number, an array or None; the gradient flows where a is
    within the bounds as they were at the forward (array bounds are copied: an in-place change
    to them afterwards cannot move it)."""

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        lo, hi = ctx.bounds = (owned(lo), owned(hi))
        xp, y = _xp(a), a  # maximum and minimum: NaN propagates, as with clip
        if lo is not None:
            y = xp.maximum(y, xp.asarray(lo, a.dtype))
        if hi is not None:
            y = xp.minimum(y, xp.asarray(hi, a.dtype))
        return (y if y is not a else a.copy()).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        keep = _xp(a).ones(a.shape, bool)
        if lo is not None:
            keep = keep & (a >= lo)  # (bounds may broadcast a to a larger shape)
        if hi is not None:
            keep = keep & (a <= hi)
        return unbroadcast(g * keep, a.shape)


def _extremum_backward(ctx, g, a_loses, b_loses):
    """Gradients of max/min(a, b), as PyTorch's: all of g to a side unless it loses, half of g to
    each side of a tie; with a NaN on either side neither loses, so both get all of g."""
    a, b = ctx.saved_tensors
    need = ctx.needs_input_grad
    tie = (a == b).astype(g.dtype) * g.dtype.type(0.5)
    return (unbroadcast(g * (1 - tie - a_loses), a.shape) if need[0] else None,
            unbroadcast(g * (1 - tie - b_loses), b.shape) if need[1] else None)


class MaximumFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _xps(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _extremum_backward(ctx, g, a < b, a > b)


class MinimumFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _xps(a, b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _extremum_backward(ctx, g, a > b, a < b)


class WhereFn(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        xp = _xps(a, b, cond)
        ctx.cond, ctx.shapes = xp.asarray(cond).astype(bool), (a.shape, b.shape)
        return xp.where(ctx.cond, a, b)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        zero = g.dtype.type(0)
        return None, unbroadcast(xp.where(ctx.cond, g, zero), ctx.shapes[0]), \
            unbroadcast(xp.where(ctx.cond, zero, g), ctx.shapes[1])


class MaxReduceFn(Function):
    """max (or min) over dims; the gradient is shared evenly among tied extremes (a NaN is the
    extreme where there is one, as it is the result)."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, largest=True):
        xp = _xp(a)
        axes = _axes(dim, a.ndim)
        y = (xp.max if largest else xp.min)(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else xp.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        if not ctx.keepdim:
            g = _xp(g).expand_dims(g, ctx.axes)
        hit = a == y
        if a.dtype.kind == "f":
            xp = _xp(a)
            hit |= xp.isnan(a) & xp.isnan(y)
        hit = hit.astype(g.dtype)
        return g * hit / hit.sum(axis=ctx.axes, keepdims=True)


def max_kept(a, axes):
    """max over ``axes`` with the dims kept; -inf where they are empty (so that softmax and
    logsumexp of nothing are empty and -inf, as in PyTorch, not NumPy's error)."""
    xp = _xp(a)
    if a.size == 0:
        return xp.full(tuple(1 if i in axes else n for i, n in enumerate(a.shape)), -xp.inf, a.dtype)
    return xp.max(a, axis=axes, keepdims=True)


class LogSumExpFn(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        xp = _xp(a)
        axes = _axes(dim, a.ndim)
        m = max_kept(a, axes)
        m = xp.where(xp.isfinite(m), m, a.dtype.type(0))
        with backend.device_of(a).errstate(divide="ignore"):  # the log of an empty sum: -inf
            y = m + xp.log(xp.sum(xp.exp(a - m), axis=axes, keepdims=True))
        ctx.save_for_backward(a, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else xp.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        xp = _xp(a)
        if not ctx.keepdim:
            g = xp.expand_dims(g, ctx.axes)
        return g * xp.exp(a - y)


class VarFn(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, correction=1):
        xp = _xp(a)
        axes = _axes(dim, a.ndim)
        mu = xp.mean(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, mu)
        ctx.axes, ctx.keepdim, ctx.div = axes, keepdim, max(_count(a.shape, axes) - correction, 0)
        with backend.device_of(a).errstate(invalid="ignore", divide="ignore"):
            y = xp.sum((a - mu) ** 2, axis=axes, keepdims=True) / a.dtype.type(ctx.div)
        return y if keepdim else xp.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, mu = ctx.saved_tensors
        if not ctx.keepdim:
            g = _xp(g).expand_dims(g, ctx.axes)
        with backend.device_of(a).errstate(invalid="ignore", divide="ignore"):
            return g * 2 * (a - mu) / a.dtype.type(ctx.div)
