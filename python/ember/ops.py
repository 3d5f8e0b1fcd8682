"""Native kernels as functions over arrays.

``gemm`` and ``gemm_ref`` take float32 NumPy arrays and read any strides in place
(transposed and sliced views are never copied). ``matmul`` follows ``numpy.matmul``'s
shape rules on top of ``gemm``. The ``*_ref`` convolution and pooling functions are the
plain-loop references (NCHW, PyTorch's semantics) that the fast paths are tested against.
"""

from __future__ import annotations

import numpy as np

from . import _C, _geometry


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
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-d array")
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
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise ValueError("matmul: out must not share memory with a or b")
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


# --------------------------------------------------------------------------- convolution
# The reference implementations (plain loops, double accumulation): the oracles that the
# fast convolution and pooling paths are tested against. NCHW input, OIHW weight.


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
    """2-D convolution ``act(conv(input, weight) + bias)``, PyTorch's ``F.conv2d`` semantics.

    NCHW input, OIHW weight. ``padding`` is an int, a pair, ``'same'`` (stride 1; an even
    kernel pads one more at the bottom/right) or ``'valid'``. ``relu=True`` fuses a ReLU.
    Returns N x O x OH x OW float32. The algorithm follows the layer's shape (Winograd for 3x3
    at unit stride, per-tap GEMMs over the padded input, direct kernels for few or single input
    channels per group, implicit GEMM otherwise); none builds the im2col matrix.
    """
    return _conv2d(_C.conv2d_fwd, input, weight, bias, stride, padding, dilation, groups, relu)


def conv2d_ref(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
    """Reference :func:`conv2d` (plain loops, double accumulation)."""
    return _conv2d(_C.conv2d_fwd_ref, input, weight, bias, stride, padding, dilation, groups, relu)


def _conv2d(fwd, input, weight, bias, stride, padding, dilation, groups, relu):
    x = _geometry.float32_nchw(input, "input")
    w = _geometry.float32_nchw(weight, "weight")
    g = _geometry.conv2d_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    b = None
    if bias is not None:
        b = _as_f32(bias, "bias")
        if b.shape != (g.o,):
            raise ValueError(f"bias must have shape ({g.o},) (one value per output channel), got {b.shape}")
        b = np.ascontiguousarray(b)
    y = np.empty(g.output_shape, np.float32)
    fwd(x, w, b, y, *g.native_args(), bool(relu))
    return y


def conv2d_backward_data(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of :func:`conv2d` with respect to its input: returns N x C x H x W float32.

    Needs only the weight and ``grad_output`` (a frozen layer never computes the weight
    gradient). With a fused ReLU, ``grad_output`` must already be zero where the output was
    clamped. At unit stride this is the forward convolution of ``grad_output`` with the flipped
    kernel; otherwise column blocks of ``weightᵀ @ grad_output`` are scattered straight into the
    result. The column matrix is never built whole.
    """
    return _conv2d_backward_data(_C.conv2d_bwd_data, grad_output, weight, input_shape, stride, padding, dilation,
                                 groups)


def conv2d_backward_data_ref(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Reference :func:`conv2d_backward_data` (plain loops, double accumulation)."""
    return _conv2d_backward_data(_C.conv2d_bwd_data_ref, grad_output, weight, input_shape, stride, padding,
                                 dilation, groups)


def _conv2d_backward_data(bwd, grad_output, weight, input_shape, stride, padding, dilation, groups):
    w = _geometry.float32_nchw(weight, "weight")
    in_shape = _geometry.shape4(input_shape, "input_shape")
    g = _geometry.conv2d_geometry(in_shape, w.shape, stride, padding, dilation, groups)
    dy = _geometry.float32_nchw(grad_output, "grad_output")
    if dy.shape != g.output_shape:
        raise ValueError(f"grad_output must have the forward output's shape {g.output_shape}, got {dy.shape}")
    dx = np.empty(in_shape, np.float32)
    bwd(dy, w, dx, *g.native_args())
    return dx


def conv2d_backward_weight(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                           bias=False):
    """Gradients of :func:`conv2d` with respect to the weight and (if ``bias``) the bias:
    returns ``(grad_weight, grad_bias or None)``.

    Needs only the input and ``grad_output`` (the first layer never computes an input
    gradient). Summed over the images by Winograd F(3x3, 2x2), per-tap GEMMs, direct kernels or
    ``grad_output @ im2col(input)ᵀ`` with the transposed im2col matrix packed block by block
    straight from the input, by the layer's shape; threads sum their own images, so the order
    of summation (not its accuracy) depends on the thread count.
    """
    return _conv2d_backward_weight(_C.conv2d_bwd_weight, input, grad_output, weight_shape, stride, padding,
                                   dilation, groups, bias)


def conv2d_backward_weight_ref(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                               bias=False):
    """Reference :func:`conv2d_backward_weight` (plain loops, double accumulation)."""
    return _conv2d_backward_weight(_C.conv2d_bwd_weight_ref, input, grad_output, weight_shape, stride, padding,
                                   dilation, groups, bias)


def _conv2d_backward_weight(bwd, input, grad_output, weight_shape, stride, padding, dilation, groups, bias):
    x = _geometry.float32_nchw(input, "input")
    w_shape = _geometry.shape4(weight_shape, "weight_shape")
    g = _geometry.conv2d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    dy = _geometry.float32_nchw(grad_output, "grad_output")
    if dy.shape != g.output_shape:
        raise ValueError(f"grad_output must have the forward output's shape {g.output_shape}, got {dy.shape}")
    dw = np.empty(w_shape, np.float32)
    db = np.empty((g.o,), np.float32) if bias else None
    bwd(x, dy, dw, db, *g.native_args())
    return dw, db


# --------------------------------------------------------------------------- pooling
# NCHW, PyTorch's semantics. Each function has a *_ref twin running the plain-loop oracle
# with the same checks; the private helpers take the native function to call.


def _max_pool2d(fwd, input, kernel_size, stride, padding, dilation, ceil_mode, with_indices):
    x = _geometry.float32_nchw(input, "input")
    g = _geometry.pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = np.empty(x.shape[:2] + (g.oh, g.ow), np.float32)
    idx = np.empty(y.shape, np.int64) if with_indices else None
    fwd(x, y, idx, *g.native_args(), *g.dilation)
    return y, idx


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling, PyTorch's ``F.max_pool2d``: the first maximum wins a tie, NaN wins over any
    number, padding is never chosen. With ``return_indices`` also the int64 flat ``h * W + w``
    position of each maximum in its input plane, which :func:`max_pool2d_backward` needs."""
    y, idx = _max_pool2d(_C.max_pool2d_fwd, input, kernel_size, stride, padding, dilation, ceil_mode,
                         return_indices)
    return (y, idx) if return_indices else y


def max_pool2d_ref(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference :func:`max_pool2d`; returns ``(output, indices)``."""
    return _max_pool2d(_C.max_pool2d_fwd_ref, input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _max_pool2d_backward(bwd, grad_output, indices, input_shape):
    dy = _geometry.float32_nchw(grad_output, "grad_output")
    in_shape = _geometry.shape4(input_shape, "input_shape")
    if not isinstance(indices, np.ndarray) or indices.dtype != np.int64:
        raise TypeError("indices must be a numpy.ndarray of int64 (as max_pool2d returns)")
    if indices.shape != dy.shape:
        raise ValueError(f"indices must have grad_output's shape {dy.shape}, got {indices.shape}")
    dx = np.empty(in_shape, np.float32)
    bwd(dy, np.ascontiguousarray(indices), dx)
    return dx


def max_pool2d_backward(grad_output, indices, input_shape):
    """Gradient of max pooling: each output's gradient added at its argmax (``indices``)."""
    return _max_pool2d_backward(_C.max_pool2d_bwd, grad_output, indices, input_shape)


def max_pool2d_backward_ref(grad_output, indices, input_shape):
    """Reference :func:`max_pool2d_backward`."""
    return _max_pool2d_backward(_C.max_pool2d_bwd_ref, grad_output, indices, input_shape)


def _avg_pool2d(fwd, input, kernel_size, stride, padding, ceil_mode, count_include_pad):
    x = _geometry.float32_nchw(input, "input")
    g = _geometry.pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    y = np.empty(x.shape[:2] + (g.oh, g.ow), np.float32)
    fwd(x, y, *g.native_args(), bool(count_include_pad))
    return y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling, PyTorch's ``F.avg_pool2d`` semantics."""
    return _avg_pool2d(_C.avg_pool2d_fwd, input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def avg_pool2d_ref(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Reference :func:`avg_pool2d`."""
    return _avg_pool2d(_C.avg_pool2d_fwd_ref, input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def _avg_pool2d_backward(bwd, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    in_shape = _geometry.shape4(input_shape, "input_shape")
    g = _geometry.pool2d_geometry(in_shape, kernel_size, stride, padding, 1, ceil_mode)
    dy = _geometry.float32_nchw(grad_output, "grad_output")
    if dy.shape != in_shape[:2] + (g.oh, g.ow):
        raise ValueError(f"grad_output must have the forward output's shape {in_shape[:2] + (g.oh, g.ow)}, "
                         f"got {dy.shape}")
    dx = np.empty(in_shape, np.float32)
    bwd(dy, dx, *g.native_args(), bool(count_include_pad))
    return dx


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of :func:`avg_pool2d` with respect to its input."""
    return _avg_pool2d_backward(_C.avg_pool2d_bwd, grad_output, input_shape, kernel_size, stride, padding,
                                ceil_mode, count_include_pad)


def avg_pool2d_backward_ref(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                            count_include_pad=True):
    """Reference :func:`avg_pool2d_backward`."""
    return _avg_pool2d_backward(_C.avg_pool2d_bwd_ref, grad_output, input_shape, kernel_size, stride, padding,
                                ceil_mode, count_include_pad)


def _adaptive_avg_pool2d(fwd, input, output_size):
    x = _geometry.float32_nchw(input, "input")
    oh, ow = _geometry.pair(output_size, "output_size", 1)
    y = np.empty(x.shape[:2] + (oh, ow), np.float32)
    fwd(x, y)
    return y


def adaptive_avg_pool2d(input, output_size=1):
    """Adaptive average pooling to ``output_size`` (an int or a pair); 1 is global average pooling."""
    return _adaptive_avg_pool2d(_C.adaptive_avg_pool2d_fwd, input, output_size)


def adaptive_avg_pool2d_ref(input, output_size=1):
    """Reference :func:`adaptive_avg_pool2d`."""
    return _adaptive_avg_pool2d(_C.adaptive_avg_pool2d_fwd_ref, input, output_size)


def _adaptive_avg_pool2d_backward(bwd, grad_output, input_shape):
    dy = _geometry.float32_nchw(grad_output, "grad_output")
    in_shape = _geometry.shape4(input_shape, "input_shape")
    dx = np.empty(in_shape, np.float32)
    bwd(dy, dx)
    return dx


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input."""
    return _adaptive_avg_pool2d_backward(_C.adaptive_avg_pool2d_bwd, grad_output, input_shape)


def adaptive_avg_pool2d_backward_ref(grad_output, input_shape):
    """Reference :func:`adaptive_avg_pool2d_backward`."""
    return _adaptive_avg_pool2d_backward(_C.adaptive_avg_pool2d_bwd_ref, grad_output, input_shape)
