"""The differentiable ops, one Function each, backward beside forward.

Forwards work on arrays with NumPy's broadcasting; a backward returns each input's gradient
summed back down to that input's shape (``unbroadcast``). Float32 matrix products run on
Ember's GEMM.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from .. import ops as native
from .function import Function


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _native_eltwise(*arrays) -> bool:
    """Whether an elementwise op on these arrays runs in Ember's kernel (threads, and output
    memory from the host cache: a training step reuses the same sizes, and fresh pages cost
    more than a ReLU) rather than NumPy's: large, C-contiguous float32 or float64 arrays."""
    a = arrays[0]
    if type(a) is not np.ndarray or a.nbytes < _C.host_cache_min_bytes or a.dtype not in _NATIVE_FLOATS:
        return False
    return all(type(b) is np.ndarray and b.dtype == a.dtype and b.flags.c_contiguous for b in arrays)


def unbroadcast(g, shape):
    """Sum g over the axes broadcasting added or stretched, to the input's shape."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


# The arithmetic ops' operands are arrays or NumPy scalars (Tensor turns Python numbers into
# scalars of its dtype), so each has a .shape; a gradient is computed only where needed.


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        need = ctx.needs_input_grad
        return (unbroadcast(g, ctx.shapes[0]) if need[0] else None,
                unbroadcast(g, ctx.shapes[1]) if need[1] else None)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        need = ctx.needs_input_grad
        return (unbroadcast(g, ctx.shapes[0]) if need[0] else None,
                unbroadcast(-g, ctx.shapes[1]) if need[1] else None)


class Mul(Function):
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


class Div(Function):
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
# routes number operands here. a - c is
# a + (-c) exactly.


class AddScalar(Function):
    grad_name = "Add"  # its node is named as the general op's

    @staticmethod
    def forward(ctx, a, c):
        return a + c

    @staticmethod
    def backward(ctx, g):
        return g, None


class RSubScalar(Function):
    """c - a."""

    grad_name = "Sub"  # its node is named as the general op's

    @staticmethod
    def forward(ctx, a, c):
        return c - a

    @staticmethod
    def backward(ctx, g):
        return -g, None


class MulScalar(Function):
    grad_name = "Mul"  # its node is named as the general op's

    @staticmethod
    def forward(ctx, a, c):
        ctx.c = c
        return a * c

    @staticmethod
    def backward(ctx, g):
        return g * ctx.c, None


class DivScalar(Function):
    """a / c."""

    grad_name = "Div"  # its node is named as the general op's

    @staticmethod
    def forward(ctx, a, c):
        ctx.c = c
        return a / c

    @staticmethod
    def backward(ctx, g):
        return g / ctx.c, None


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** b, either a tensor; d/db uses log(a), defined for a > 0."""

    @staticmethod
    def forward(ctx, a, b):
        y = np.power(a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g * b * np.power(a, np.subtract(b, 1)), np.shape(a))
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = unbroadcast(g * y * np.log(a), np.shape(b))
        return ga, gb


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * np.sign(a)


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        if _native_eltwise(a):
            y = _C.empty(a.shape, a.dtype)
            _C.relu_fwd(a, y)
        else:
            y = np.maximum(a, 0)  # NaN propagates
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if _native_eltwise(g, y):
            dx = _C.empty(g.shape, g.dtype)
            _C.relu_bwd(g, y, dx)
            return dx
        return np.where(y > 0, g, g.dtype.type(0))


def _axes(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
        out.append(d % max(ndim, 1))
    return tuple(out)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.axes, ctx.keepdim = np.shape(a), _axes(dim, np.ndim(a)), keepdim
        return np.asarray(np.sum(a, axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axes)
        return np.broadcast_to(g, ctx.shape).copy()


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.axes, ctx.keepdim = np.shape(a), _axes(dim, np.ndim(a)), keepdim
        ctx.count = int(np.prod([ctx.shape[i] for i in ctx.axes])) if ctx.shape else 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.mean(a, axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axes)
        return np.broadcast_to(g / max(ctx.count, 1), ctx.shape).copy()


class Reshape(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return np.reshape(g, ctx.shape)


class Transpose(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dim0, dim1):
        ctx.dims = (dim0, dim1)
        return np.swapaxes(a, dim0, dim1)

    @staticmethod
    def backward(ctx, g):
        return np.swapaxes(g, *ctx.dims)


class MatMul(Function):
    """a @ b with NumPy's matmul rules (1-D, batched, broadcast batch dims)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(_matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(_matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return ga, gb


def _matmul(a, b):
    if a.dtype == np.float32 and b.dtype == np.float32 and a.ndim >= 1 and b.ndim >= 1:
        return native.matmul(a, b)
    return np.matmul(a, b)


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        ctx.bounds = (lo, hi)
        return np.clip(a, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        keep = np.ones(a.shape, bool)
        if lo is not None:
            keep &= a >= lo
        if hi is not None:
            keep &= a <= hi
        return g * keep


def _extremum_backward(ctx, g, wins):
    """Gradients of max/min(a, b): to the winner, half to each side of a tie (as PyTorch)."""
    a, b = ctx.saved_tensors
    wa = wins(a, b) + 0.5 * (a == b)
    return unbroadcast(g * wa, np.shape(a)), unbroadcast(g * (1 - wa), np.shape(b))


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _extremum_backward(ctx, g, np.greater)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _extremum_backward(ctx, g, np.less)


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.cond, ctx.shapes = np.asarray(cond, bool), (np.shape(a), np.shape(b))
        return np.where(ctx.cond, a, b)

    @staticmethod
    def backward(ctx, g):
        return None, unbroadcast(np.where(ctx.cond, g, 0), ctx.shapes[0]), unbroadcast(np.where(ctx.cond, 0, g),
                                                                                          ctx.shapes[1])


class MaxReduce(Function):
    """max (or min) over dims; the gradient is shared evenly among tied extremes."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, largest=True):
        axes = _axes(dim, np.ndim(a))
        y = (np.max if largest else np.min)(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else np.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axes)
        hit = a == y
        return g * hit / hit.sum(axis=ctx.axes, keepdims=True)


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        axes = _axes(dim, np.ndim(a))
        m = np.max(a, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        y = m + np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True))
        ctx.save_for_backward(a, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else np.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axes)
        return g * np.exp(a - y)


class Var(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, correction=1):
        axes = _axes(dim, np.ndim(a))
        n = int(np.prod([np.shape(a)[i] for i in axes])) if np.ndim(a) else 1
        mu = np.mean(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, mu)
        ctx.axes, ctx.keepdim, ctx.div = axes, keepdim, max(n - correction, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.sum((a - mu) ** 2, axis=axes, keepdims=True) / ctx.div
        return y if keepdim else np.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, g):
        a, mu = ctx.saved_tensors
        if not ctx.keepdim:
            g = np.expand_dims(g, ctx.axes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return g * 2 * (a - mu) / ctx.div


class Permute(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        return np.transpose(g, np.argsort(ctx.dims))


class Expand(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        shape = tuple(s if s != -1 else np.shape(a)[i - len(shape) + np.ndim(a)] for i, s in enumerate(shape))
        return np.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape)


class Index(Function):
    """a[key]: basic and integer-array indexing; backward scatters with np.add.at, so repeated
    indices add up."""

    view = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.dtype, ctx.key = np.shape(a), a.dtype, key
        return np.asarray(a[key])

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, ctx.dtype)
        np.add.at(out, ctx.key, g)
        return out


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [np.shape(a)[dim] for a in arrays]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(np.split(g, np.cumsum(ctx.sizes)[:-1], axis=ctx.dim))


class Stack(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(np.moveaxis(g, ctx.dim, 0))


class Split(Function):
    """Pieces of ``sizes`` along ``dim``: one output per piece."""

    view = True

    @staticmethod
    def forward(ctx, a, sizes, dim):
        ctx.shape, ctx.dtype, ctx.dim = np.shape(a), a.dtype, dim
        return tuple(np.split(a, np.cumsum(sizes)[:-1], axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return np.concatenate(grads, axis=ctx.dim)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.where(a >= 0, 1 / (1 + np.exp(-np.abs(a))), np.exp(-np.abs(a)) / (1 + np.exp(-np.abs(a))))
        y = y.astype(a.dtype, copy=False)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, a, slope=0.01):
        ctx.save_for_backward(a)
        ctx.slope = slope
        return np.where(a > 0, a, a * a.dtype.type(slope))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return np.where(a > 0, g, g * a.dtype.type(ctx.slope))


class GELU(Function):
    """x Phi(x) with the exact normal CDF (PyTorch's default, approximate='none')."""

    @staticmethod
    def forward(ctx, a):
        if a.dtype not in _NATIVE_FLOATS:
            raise TypeError(f"gelu: input must be float32 or float64, got {a.dtype}")
        z = np.asarray(np.divide(a, np.sqrt(2.0), dtype=a.dtype, order="C"))
        erf = np.empty_like(z)
        _C.erf(z, erf)
        cdf = 0.5 * (1 + erf)
        ctx.save_for_backward(a, cdf)
        return a * cdf

    @staticmethod
    def backward(ctx, g):
        a, cdf = ctx.saved_tensors
        pdf = np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)
        return g * (cdf + a * pdf)


class SiLU(Function):
    @staticmethod
    def forward(ctx, a):
        s = Sigmoid.forward(ctx, a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved_tensors
        return g * s * (1 + a * (1 - s))


class Softmax(Function):
    @staticmethod
    def forward(ctx, a, dim):
        e = np.exp(a - np.max(a, axis=dim, keepdims=True))
        y = e / np.sum(e, axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - np.sum(g * y, axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, dim):
        m = np.max(a, axis=dim, keepdims=True)
        y = a - m - np.log(np.sum(np.exp(a - m), axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g - np.exp(y) * np.sum(g, axis=ctx.dim, keepdims=True)


class Dropout(Function):
    """Zeroes elements with probability p and scales the rest by 1 / (1 - p)."""

    @staticmethod
    def forward(ctx, a, p, generator):
        keep = generator.random(np.shape(a)) >= p
        ctx.mask = keep.astype(a.dtype) / a.dtype.type(1 - p)
        return a * ctx.mask

    @staticmethod
    def backward(ctx, g):
        return g * ctx.mask


# ----------------------------------------------------------------------- through the native kernels
# Float32 NCHW tensors; forward and backward are Ember's convolution, pooling and cross-entropy
# kernels.


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.args = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        ctx.has_bias = b is not None
        return native.conv2d(x, w, b, **ctx.args)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = np.ascontiguousarray(g)
        gx = native.conv2d_backward_data(g, w, x.shape, **ctx.args) if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gw, gb = native.conv2d_backward_weight(x, g, w.shape, bias=ctx.has_bias, **ctx.args)
        return gx, gw, gb


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, ctx.indices = native.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        return native.max_pool2d_backward(np.ascontiguousarray(g), ctx.indices, ctx.shape)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad):
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
        ctx.shape = x.shape
        return native.avg_pool2d(x, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        return native.avg_pool2d_backward(np.ascontiguousarray(g), ctx.shape, *ctx.args)


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.shape = x.shape
        return native.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return native.adaptive_avg_pool2d_backward(np.ascontiguousarray(g), ctx.shape)


class CrossEntropy(Function):
    """The fused softmax cross-entropy: the forward keeps only the per-row log-sum-exp."""

    @staticmethod
    def forward(ctx, z, target, weight, ignore_index, label_smoothing, reduction):
        ctx.args = {"weight": weight, "ignore_index": ignore_index, "label_smoothing": label_smoothing,
                    "reduction": reduction}
        loss, lse = native.softmax_cross_entropy(z, target, return_lse=True, **ctx.args)
        ctx.save_for_backward(z)
        ctx.target, ctx.lse = target, lse
        return np.asarray(loss)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        g = g if ctx.args["reduction"] == "none" else float(g)
        return native.softmax_cross_entropy_backward(z, ctx.target, ctx.lse, g, **ctx.args), None, None


class Linear(Function):
    """x @ weightᵀ + bias on Ember's GEMM (the bias added in its epilogue); x may have any
    leading dimensions."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        x2 = x.reshape(-1, x.shape[-1])
        if x.dtype == np.float32 and w.dtype == np.float32:
            y = native.gemm(x2, w, trans_b=True, bias=b)
        else:
            y = x2 @ w.T + (0 if b is None else b)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        x2, g2 = x.reshape(-1, x.shape[-1]), np.ascontiguousarray(g).reshape(-1, w.shape[0])
        gx = _matmul(g2, w).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gw = _matmul(np.swapaxes(g2, 0, 1), x2) if ctx.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb
