"""The differentiable ops of neural networks, one Function each: activations, softmax, dropout,
and the ops that run on Ember's kernels -- convolution, pooling, cross-entropy and linear layers
(see ``functions`` for the conventions they share)."""

from __future__ import annotations

import math

from .. import backend
from ..kernels import conv2d, cross_entropy, eltwise, gemm, pool2d
from ..kernels._common import FLOAT32
from .function import Function, owned
from .functions import _native, matmul_arrays, max_kept

_xp = backend.namespace


def _float_input(a):
    """``a`` in a floating dtype: an integer or bool input as float32 (PyTorch's default dtype),
    as PyTorch's sigmoid and tanh take it."""
    return a if a.dtype.kind == "f" else a.astype(FLOAT32)


def _floating(a, what: str):
    """``a``, which must be floating-point: PyTorch computes ``what`` for floating dtypes only."""
    if a.dtype.kind != "f":
        raise TypeError(f"{what}: input must be a floating-point tensor, got {a.dtype}; convert it with .float()")
    return a


# ----------------------------------------------------------------------- activations


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


def _sigmoid(a):
    xp = _xp(a)
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


class SigmoidFn(Function):
    """1 / (1 + exp(-a)); an integer or bool input gives float32."""

    @staticmethod
    def forward(ctx, a):
        y = _sigmoid(_float_input(a))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class TanhFn(Function):
    """tanh(a); an integer or bool input gives float32."""

    @staticmethod
    def forward(ctx, a):
        y = _xp(a).tanh(_float_input(a))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class LeakyReLUFn(Function):
    @staticmethod
    def forward(ctx, a, slope=0.01):
        ctx.save_for_backward(_floating(a, "leaky_relu"))
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
        s = _sigmoid(_floating(a, "silu"))
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved_tensors
        return g * s * (1 + a * (1 - s))


def _softmax_axes(a, dim, what: str) -> tuple:
    """The axes softmax over ``dim`` normalizes: ``(dim,)``, or none for a 0-d input (its one
    element is its own row: softmax 1, log_softmax 0, as PyTorch's)."""
    _floating(a, what)
    return (dim,) if a.ndim else ()


class SoftmaxFn(Function):
    """exp(a) / sum(exp(a)) along ``dim``, floating-point input only (as PyTorch's)."""

    @staticmethod
    def forward(ctx, a, dim):
        xp = _xp(a)
        ctx.axes = _softmax_axes(a, dim, "softmax")
        e = xp.exp(a - max_kept(a, ctx.axes))
        y = e / xp.sum(e, axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * (g - _xp(g).sum(g * y, axis=ctx.axes, keepdims=True))


class LogSoftmaxFn(Function):
    """log(softmax(a, dim)), computed stably; floating-point input only (as PyTorch's)."""

    @staticmethod
    def forward(ctx, a, dim):
        xp = _xp(a)
        ctx.axes = _softmax_axes(a, dim, "log_softmax")
        m = max_kept(a, ctx.axes)
        with backend.device_of(a).errstate(divide="ignore"):  # an empty dim: no rows to take the log of
            y = a - m - xp.log(xp.sum(xp.exp(a - m), axis=ctx.axes, keepdims=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = _xp(g)
        return g - xp.exp(y) * xp.sum(g, axis=ctx.axes, keepdims=True)


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
    """Max pooling; saves the positions of the maxima (a subclass that returns them as an output
    has an in-place change to them caught by backward's version check)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, indices = pool2d.max_pool2d_fwd(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        return pool2d.max_pool2d_bwd(g, indices, ctx.shape)


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
    """The fused softmax cross-entropy: the forward keeps only the per-row log-sum-exp. The class
    weight is saved for backward: pass it as a tensor (positionally), and a change to it in place
    before backward is an error there, as in PyTorch."""

    @staticmethod
    def forward(ctx, z, target, weight, ignore_index, label_smoothing, reduction):
        ctx.args = {"ignore_index": ignore_index, "label_smoothing": label_smoothing, "reduction": reduction}
        loss, lse = cross_entropy.cross_entropy_fwd(z, target, weight=weight, return_lse=True, **ctx.args)
        ctx.save_for_backward(z, weight)
        ctx.target, ctx.lse = owned(target), lse  # the targets as they were
        return loss

    @staticmethod
    def backward(ctx, g):
        z, weight = ctx.saved_tensors
        gz = cross_entropy.cross_entropy_bwd(z, ctx.target, ctx.lse, g, weight=weight, **ctx.args) \
            if ctx.needs_input_grad[0] else None
        return gz, (_soft_target_grad(ctx, z, weight, g) if ctx.needs_input_grad[1] else None), None


def _soft_target_grad(ctx, z, weight, g):
    """d loss / d target for probability targets (which PyTorch differentiates too):
    -(1 - label_smoothing) weight_c log p_ic, times each row's share of the reduction."""
    xp = _xp(z)
    log_p = z - ctx.lse.reshape(-1, 1)
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
        gx = matmul_arrays(g2, w).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gw = matmul_arrays(xp.swapaxes(g2, 0, 1), x2) if ctx.needs_input_grad[1] else None
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
