"""The differentiable ops, one Function each, backward beside forward.

Forwards work on arrays with NumPy's broadcasting rules, in the inputs' own array namespace
(``xp``: NumPy on the CPU, CuPy on CUDA; found through ``ember.backend``), so the same code runs
on every device; a backward returns each input's gradient summed back down to that input's
shape (``unbroadcast``). Matrix products, convolution, pooling, cross-entropy and large ReLUs
run on Ember's kernels through the doors of ``ember.kernels``.

Class names end in ``Fn`` (``Conv2dFn``), so that they cannot be mistaken for the layers of
``ember.nn``; their graph nodes are named without it (``Conv2dBackward``).
"""

from __future__ import annotations

import copy
import itertools
import math

from .. import backend
from ..kernels import conv2d, cross_entropy, eltwise, gemm, pool2d
from ..kernels._common import FLOAT32
from .function import Function

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
    if dim is None:
        return tuple(range(ndim))
    if ndim == 0:  # a 0-d tensor has the one dim 0 (or -1), over which reducing changes nothing
        for d in (dim,) if isinstance(dim, int) else tuple(dim):
            if d not in (0, -1):
                raise IndexError(f"dim {d} is out of range for a tensor of 0 dimensions (expected 0 or -1)")
        return ()
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
        out.append(d % max(ndim, 1))
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
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * _xp(a).sign(a)


class ReLUFn(Function):
    @staticmethod
    def forward(ctx, a):
        y = eltwise.relu_fwd(a) if _native(a) else _xp(a).maximum(a, a.dtype.type(0))  # NaN propagates
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if _native(g) and y.flags.c_contiguous:
            return eltwise.relu_bwd(g, y)
        return _xp(g).where(y <= 0, g.dtype.type(0), g)  # through a NaN too, as PyTorch's


# ----------------------------------------------------------------------- reductions and shapes


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


class ReshapeFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class TransposeFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dim0, dim1):
        ctx.dims = (dim0, dim1)
        return _xp(a).swapaxes(a, dim0, dim1)

    @staticmethod
    def backward(ctx, g):
        return _xp(g).swapaxes(g, *ctx.dims)


class MatMulFn(Function):
    """a @ b with NumPy's matmul rules (1-D, batched, broadcast batch dims)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = _xp(g)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(_matmul(g2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(_matmul(xp.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return ga, gb


def _matmul(a, b):
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
    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        ctx.bounds = (lo, hi)
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


def _extremum_backward(ctx, g, a_wins):
    """Gradients of max/min(a, b): to the winner, half to each side of a tie (as PyTorch)."""
    a, b = ctx.saved_tensors
    wa = (a_wins + 0.5 * (a == b)).astype(g.dtype)
    return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)


class MaximumFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _xps(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _extremum_backward(ctx, g, a > b)


class MinimumFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _xps(a, b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _extremum_backward(ctx, g, a < b)


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


class TakeAlongDimFn(Function):
    """The elements of ``a`` that ``index`` (``a``'s shape with ``dim`` of size 1) picks along
    ``dim``: max/min along a dim once argmax/argmin found them. The gradient goes to the picked
    elements."""

    @staticmethod
    def forward(ctx, a, index, dim, keepdim=False):
        xp = _xp(a)
        flat = a.reshape(1) if a.ndim == 0 else a
        ctx.dim, ctx.size, ctx.shape, ctx.index = dim, flat.shape[dim], a.shape, index
        values = xp.take_along_axis(flat, index, axis=dim)
        if a.ndim == 0:
            return values.reshape(())
        return values if keepdim else xp.squeeze(values, axis=dim)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        g = g.reshape(ctx.index.shape)  # restores a squeezed dim (or the 0-d case's one)
        span = [1] * ctx.index.ndim
        span[ctx.dim] = ctx.size
        hit = xp.arange(ctx.size).reshape(span) == ctx.index
        return xp.where(hit, g, g.dtype.type(0)).reshape(ctx.shape), None


def _max_kept(a, axes):
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
        m = _max_kept(a, axes)
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


class PermuteFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return _xp(a).transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        inverse = sorted(range(len(ctx.dims)), key=ctx.dims.__getitem__)
        return _xp(g).transpose(g, inverse)


class ExpandFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        lead = len(shape) - a.ndim  # new leading dimensions: -1 (keep the size) means nothing there
        if lead < 0:
            raise ValueError(f"expand: {tuple(shape)} has fewer dimensions than the tensor's {a.shape}")
        if any(s == -1 for s in shape[:lead]):
            raise ValueError(f"expand: -1 in a new leading dimension of {tuple(shape)} (the tensor has {a.ndim})")
        shape = tuple(s if s != -1 else a.shape[i - lead] for i, s in enumerate(shape))
        return _xp(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape)


def _own_key(key):
    """An index as backward will use it, its arrays copied: a caller's later change to the
    index array must not move the gradient."""
    def own(k):
        if isinstance(k, list):
            return copy.deepcopy(k)
        return k.copy() if hasattr(k, "copy") and hasattr(k, "shape") else k
    return tuple(own(k) for k in key) if isinstance(key, tuple) else own(key)


class IndexFn(Function):
    """a[key]: basic and integer-array indexing; backward scatters, so repeated indices add up."""

    view = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.dtype, ctx.key = a.shape, a.dtype, _own_key(key)
        out = a[key]
        if type(out) is not type(a):  # integers all the way down: a 0-d view instead of NumPy's scalar copy
            out = a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return out

    @staticmethod
    def backward(ctx, g):
        dev = backend.device_of(g)
        out = dev.xp.zeros(ctx.shape, ctx.dtype)
        dev.scatter_add(out, ctx.key, g)
        return out


class CatFn(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return _xps(*arrays).concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(_xp(g).split(g, list(itertools.accumulate(ctx.sizes))[:-1], axis=ctx.dim))


class StackFn(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        return _xps(*arrays).stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(_xp(g).moveaxis(g, ctx.dim, 0))


class SplitFn(Function):
    """Pieces of ``sizes`` along ``dim``: one output per piece."""

    view = True

    @staticmethod
    def forward(ctx, a, sizes, dim):
        ctx.dim = dim
        return tuple(_xp(a).split(a, list(itertools.accumulate(sizes))[:-1], axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return _xps(*grads).concatenate(grads, axis=ctx.dim)


# ----------------------------------------------------------------------- activations


def _sigmoid(a):
    xp = _xp(a)
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


class SigmoidFn(Function):
    @staticmethod
    def forward(ctx, a):
        y = _sigmoid(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class TanhFn(Function):
    @staticmethod
    def forward(ctx, a):
        y = _xp(a).tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class LeakyReLUFn(Function):
    @staticmethod
    def forward(ctx, a, slope=0.01):
        ctx.save_for_backward(a)
        ctx.slope = slope
        return _xp(a).where(a > 0, a, a * a.dtype.type(slope))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return _xp(g).where(a > 0, g, g * a.dtype.type(ctx.slope))


class GELUFn(Function):
    """x Phi(x) with the exact normal CDF (PyTorch's default, approximate='none')."""

    @staticmethod
    def forward(ctx, a):
        if a.dtype.kind != "f" or a.itemsize not in (4, 8):
            raise TypeError(f"gelu: input must be float32 or float64, got {a.dtype}")
        ctx.save_for_backward(a)
        return eltwise.gelu_fwd(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return eltwise.gelu_bwd(g, a)


class SiLUFn(Function):
    @staticmethod
    def forward(ctx, a):
        s = _sigmoid(a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved_tensors
        return g * s * (1 + a * (1 - s))


class SoftmaxFn(Function):
    @staticmethod
    def forward(ctx, a, dim):
        xp = _xp(a)
        e = xp.exp(a - _max_kept(a, (dim,)))
        y = e / xp.sum(e, axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - _xp(g).sum(g * y, axis=ctx.dim, keepdims=True))


class LogSoftmaxFn(Function):
    @staticmethod
    def forward(ctx, a, dim):
        xp = _xp(a)
        m = _max_kept(a, (dim,))
        with backend.device_of(a).errstate(divide="ignore"):  # an empty dim: no rows to take the log of
            y = a - m - xp.log(xp.sum(xp.exp(a - m), axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = _xp(g)
        return g - xp.exp(y) * xp.sum(g, axis=ctx.dim, keepdims=True)


class DropoutFn(Function):
    """Zeroes elements with probability p and scales the rest by 1 / (1 - p); the mask is drawn
    on the host by ``generator`` (so a seed gives the same mask on every device)."""

    @staticmethod
    def forward(ctx, a, p, generator):
        dev = backend.device_of(a)
        keep = generator.random(a.shape) >= p
        ctx.mask = dev.from_host((keep / (1 - p)).astype(a.dtype))
        return a * ctx.mask

    @staticmethod
    def backward(ctx, g):
        return g * ctx.mask


# ----------------------------------------------------------------------- through the kernels
# NCHW tensors; forward and backward are Ember's convolution, pooling, cross-entropy and GEMM
# kernels (float64 runs on their references, which gradient checks use).


class Conv2dFn(Function):
    """Convolution; with ``bf16=True`` (the bf16 precision policy) the products of the forward
    and of both gradients run in bf16 where that pays (``conv2d.bf16_pays``)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, bf16=False):
        ctx.save_for_backward(x, w)
        ctx.args = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        ctx.has_bias = b is not None
        ctx.bf16, ctx.bf16_data = conv2d.bf16_pays(x, w, **ctx.args) if bf16 else (False, False)
        return conv2d.conv2d_fwd(x, w, b, **ctx.args, bf16=ctx.bf16)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = (conv2d.conv2d_bwd_data(g, w, x.shape, **ctx.args, bf16=ctx.bf16_data) if ctx.needs_input_grad[0]
              else None)
        gw = gb = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gw, gb = conv2d.conv2d_bwd_weight(x, g, w.shape, bias=ctx.has_bias, **ctx.args, bf16=ctx.bf16)
        return gx, gw, gb


class MaxPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, ctx.indices = pool2d.max_pool2d_fwd(x, kernel_size, stride, padding, dilation, ceil_mode,
                                               return_indices=True)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        return pool2d.max_pool2d_bwd(g, ctx.indices, ctx.shape)


class AvgPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad):
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
        ctx.shape = x.shape
        return pool2d.avg_pool2d_fwd(x, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        return pool2d.avg_pool2d_bwd(g, ctx.shape, *ctx.args)


class AdaptiveAvgPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.shape = x.shape
        return pool2d.adaptive_avg_pool2d_fwd(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return pool2d.adaptive_avg_pool2d_bwd(g, ctx.shape)


class CrossEntropyFn(Function):
    """The fused softmax cross-entropy: the forward keeps only the per-row log-sum-exp."""

    @staticmethod
    def forward(ctx, z, target, weight, ignore_index, label_smoothing, reduction):
        ctx.args = {"weight": weight, "ignore_index": ignore_index, "label_smoothing": label_smoothing,
                    "reduction": reduction}
        loss, lse = cross_entropy.cross_entropy_fwd(z, target, return_lse=True, **ctx.args)
        ctx.save_for_backward(z)
        # the targets as they were (a copy: a later change to the caller's array must not move the gradient)
        ctx.target, ctx.lse = (target.copy() if hasattr(target, "copy") else target), lse
        return loss

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        gz = cross_entropy.cross_entropy_bwd(z, ctx.target, ctx.lse, g, **ctx.args) if ctx.needs_input_grad[0] \
            else None
        return gz, (_soft_target_grad(ctx, z, g) if ctx.needs_input_grad[1] else None), None


def _soft_target_grad(ctx, z, g):
    """d loss / d target for probability targets (which PyTorch differentiates too):
    -(1 - label_smoothing) weight_c log p_ic, times each row's share of the reduction."""
    xp = _xp(z)
    log_p = z - ctx.lse.reshape(-1, 1)
    weight = ctx.args["weight"]
    scale = (1.0 - ctx.args["label_smoothing"]) * (1.0 if weight is None else xp.asarray(weight, z.dtype))
    reduction = ctx.args["reduction"]
    rows = g.reshape(-1, 1) if reduction == "none" else g / z.shape[0] if reduction == "mean" else g
    return (-(log_p * scale) * rows).astype(z.dtype, copy=False)


def _rows(a):
    """``a`` as the rows of its last axis (2-D), which may be empty (``reshape(-1, 0)`` cannot say)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


class LinearFn(Function):
    """x @ weightᵀ + bias on Ember's GEMM (the bias added in its epilogue); x may have any
    leading dimensions."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        x2 = _rows(x)
        if x.dtype == FLOAT32 and w.dtype == FLOAT32:
            y = gemm.gemm(x2, w, trans_b=True, bias=b)
        else:
            y = x2 @ w.T + (0 if b is None else b)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        xp = _xp(g)
        x2, g2 = _rows(x), _rows(xp.ascontiguousarray(g))
        gx = _matmul(g2, w).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gw = _matmul(xp.swapaxes(g2, 0, 1), x2) if ctx.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class LinearBf16Fn(Function):
    """``LinearFn`` under the bf16 precision policy: the input, the weight and the incoming
    gradient rounded to bf16 for the three matrix products, each summed in float32; outputs and
    gradients float32 (the weight stays a float32 master copy). Saves the bf16 copies: half the
    memory of the float32 inputs."""

    @staticmethod
    def forward(ctx, x, w, b):
        x2 = _rows(x)
        xb, wb = gemm.convert_bf16(x2), gemm.convert_bf16(w)
        ctx.save_for_backward(xb, wb)
        ctx.has_bias, ctx.x_shape = b is not None, x.shape
        y = gemm.gemm(xb, wb, trans_b=True, bias=b)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, g):
        xb, wb = ctx.saved_tensors
        g2 = _rows(g)
        gb16 = gemm.convert_bf16(g2)
        gx = gemm.gemm(gb16, wb).reshape(ctx.x_shape) if ctx.needs_input_grad[0] else None
        gw = gemm.gemm(gb16, xb, trans_a=True) if ctx.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb
