"""Native kernels as functions over arrays.

``gemm`` and ``gemm_ref`` take float32 NumPy arrays and read any strides in place
(transposed and sliced views are never copied). ``matmul`` follows ``numpy.matmul``'s
shape rules on top of ``gemm``. The ``*_ref`` convolution and pooling functions are the
plain-loop references (NCHW, PyTorch's semantics) that the fast paths are tested against.
"""

from __future__ import annotations

import numpy as np

from . import _C, _check, _geometry


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
    return _C.gemm(a, b, _gemm_out(a, b, out, beta, trans_a, trans_b), alpha, beta, trans_a, trans_b, bias, relu)


def gemm_ref(a, b, *, out=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None, relu=False):
    """The reference GEMM (plain loops, double accumulation), the oracle the fast paths are tested
    against. Same arguments and checks as :func:`gemm`."""
    return _C.gemm_ref(a, b, _gemm_out(a, b, out, beta, trans_a, trans_b), alpha, beta, trans_a, trans_b, bias,
                       relu)


def _gemm_out(a, b, out, beta, trans_a, trans_b):
    """``out``, or a new M x N float32 array when it is None. Operands that cannot be multiplied
    get an empty placeholder, so that the kernel's own checks name what is wrong with them."""
    if out is not None:
        return out
    if beta != 0:
        raise ValueError(f"beta is {beta:g} but out is None: beta scales the existing out, pass out=")
    if (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == np.float32
            and b.dtype == np.float32 and a.ndim == 2 and b.ndim == 2
            and a.shape[0 if trans_a else 1] == b.shape[1 if trans_b else 0]):
        return _C.empty((a.shape[1 if trans_a else 0], b.shape[0 if trans_b else 1]), np.float32)
    return np.empty((0, 0), np.float32)


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
        result = _C.empty(full_shape, np.float32)
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
    if result.shape != shape:
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
    y = _C.empty(g.output_shape, np.float32)
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
    dx = _C.empty(in_shape, np.float32)
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
    dw = _C.empty(w_shape, np.float32)
    db = np.empty((g.o,), np.float32) if bias else None
    bwd(x, dy, dw, db, *g.native_args())
    return dw, db


# --------------------------------------------------------------------------- pooling
# NCHW, PyTorch's semantics. Each function has a *_ref twin running the plain-loop oracle
# with the same checks; the private helpers take the native function to call.


def _max_pool2d(fwd, input, kernel_size, stride, padding, dilation, ceil_mode, with_indices):
    x = _geometry.float32_nchw(input, "input")
    g = _geometry.pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = _C.empty(x.shape[:2] + (g.oh, g.ow), np.float32)
    idx = _C.empty(y.shape, np.int64) if with_indices else None
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
    dx = _C.empty(in_shape, np.float32)
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
    y = _C.empty(x.shape[:2] + (g.oh, g.ow), np.float32)
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
    dx = _C.empty(in_shape, np.float32)
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
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"input has shape {x.shape}: adaptive pooling needs a non-empty H x W plane "
                         "(an empty one has no mean)")
    y = _C.empty(x.shape[:2] + (oh, ow), np.float32)
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
    dx = _C.empty(in_shape, np.float32)
    bwd(dy, dx)
    return dx


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input."""
    return _adaptive_avg_pool2d_backward(_C.adaptive_avg_pool2d_bwd, grad_output, input_shape)


def adaptive_avg_pool2d_backward_ref(grad_output, input_shape):
    """Reference :func:`adaptive_avg_pool2d_backward`."""
    return _adaptive_avg_pool2d_backward(_C.adaptive_avg_pool2d_bwd_ref, grad_output, input_shape)


# --------------------------------------------------------------------------- softmax cross-entropy
# PyTorch's F.cross_entropy semantics over float32 logits (batch x classes). The native kernel
# returns per-row values in float64; the reductions and the backward's per-row scales are
# computed here.

_REDUCTIONS = ("mean", "sum", "none")


def _xent_args(logits, target, weight, ignore_index, label_smoothing, reduction):
    z = logits if isinstance(logits, np.ndarray) else np.asarray(logits)
    if z.dtype != np.float32:
        raise TypeError(f"logits must have dtype float32, got {z.dtype}")
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape {z.shape}")
    z = np.ascontiguousarray(z)
    return (z,) + _xent_targets(z.shape, target, weight, ignore_index, label_smoothing, reduction)


def _xent_targets(shape, target, weight, ignore_index, label_smoothing, reduction):
    """The checked (target, weight, eps) for logits of `shape` (batch, classes)."""
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if t.ndim == 2:
        if t.dtype != np.float32:
            raise TypeError(f"soft targets must have dtype float32, got {t.dtype}")
        if t.shape != tuple(shape):
            raise ValueError(f"soft targets must have the logits' shape {tuple(shape)}, got {t.shape}")
        t = np.ascontiguousarray(t)
    elif t.ndim == 1:
        if not np.issubdtype(t.dtype, np.integer):
            raise TypeError("target must be integer class indices of shape (batch,) or a float32 (batch, classes) "
                            f"probability matrix, got {t.dtype} of shape {t.shape}")
        if t.shape[0] != shape[0]:
            raise ValueError(f"target must have shape ({shape[0]},) (one class per row of logits), got {t.shape}")
        if t.dtype.kind == "u" and t.size and t.max() > _check.INT64_MAX:  # would wrap as int64
            r = int(np.argmax(t > _check.INT64_MAX))
            raise ValueError(f"target[{r}] = {t[r]} is not a class in [0, {shape[1]})")
        t = np.ascontiguousarray(t, dtype=np.int64)
    else:
        raise ValueError(f"target must be 1-D class indices or 2-D probabilities, got shape {t.shape}")
    w = None
    if weight is not None:
        w = weight if isinstance(weight, np.ndarray) else np.asarray(weight)
        if w.dtype != np.float32:
            raise TypeError(f"weight must have dtype float32, got {w.dtype}")
        if w.shape != (shape[1],):
            raise ValueError(f"weight must have shape ({shape[1]},) (one value per class), got {w.shape}")
        w = np.ascontiguousarray(w)
    _check.integer(ignore_index, "ignore_index")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return t, w, eps


def _xent_denominator(t, w, ignore_index):
    """What 'mean' divides by: the batch for soft targets, else the targets' total weight."""
    if t.ndim == 2:
        return float(t.shape[0])
    valid = t != ignore_index
    return float(w[t[valid]].astype(np.float64).sum()) if w is not None else float(valid.sum())


def _xent_forward(fwd, logits, target, weight, ignore_index, label_smoothing, reduction, return_lse):
    z, t, w, eps = _xent_args(logits, target, weight, ignore_index, label_smoothing, reduction)
    b, v = z.shape
    lse, nll, smooth = np.empty(b), np.empty(b), np.empty(b)
    fwd(z, t, w, eps, int(ignore_index), lse, nll, smooth)
    rows = nll if t.ndim == 2 else (1.0 - eps) * nll + (eps / v) * smooth
    if reduction == "none":
        loss = rows.astype(np.float32)
    elif reduction == "sum":
        loss = np.float32(rows.sum())
    else:
        with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: NaN, as PyTorch
            loss = np.float32(rows.sum() / _xent_denominator(t, w, ignore_index))
    return (loss, lse) if return_lse else loss


def softmax_cross_entropy(logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                          return_lse=False):
    """Cross-entropy of softmax(logits) against targets: PyTorch's ``F.cross_entropy``.

    ``logits``: float32 (batch, classes). ``target``: integer class indices (batch,), or a
    float32 (batch, classes) matrix of probabilities. ``weight``: optional float32 per-class
    weights. Rows whose class is ``ignore_index`` contribute nothing; ``label_smoothing`` mixes
    the target with the uniform distribution. ``reduction``: 'mean' (over the targets' total
    weight, or the batch for probability targets), 'sum' or 'none' (float32 per row).

    One read of the logits; nothing of their size is written. With ``return_lse=True`` returns
    ``(loss, lse)``, lse being the float64 per-row log-sum-exp: all that
    :func:`softmax_cross_entropy_backward` needs besides the logits.
    """
    return _xent_forward(_C.cross_entropy_fwd, logits, target, weight, ignore_index, label_smoothing, reduction, return_lse)


def softmax_cross_entropy_ref(logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                              reduction="mean", return_lse=False):
    """Reference :func:`softmax_cross_entropy` (plain loops, double accumulation)."""
    return _xent_forward(_C.cross_entropy_fwd_ref, logits, target, weight, ignore_index, label_smoothing, reduction,
                         return_lse)


def _grad_output(grad_output, b, reduction):
    """The loss's gradient as float64: one per row (b,) with reduction='none', else a scalar."""
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        g = np.broadcast_to(g, (b,)) if g.ndim == 0 else g
        if g.shape != (b,):
            raise ValueError(f"grad_output must be a scalar or have shape ({b},) with reduction='none', "
                             f"got shape {g.shape}")
    elif g.ndim != 0:
        raise ValueError(f"grad_output must be a scalar with reduction={reduction!r}, got shape {g.shape}")
    return g


def _xent_backward(bwd, logits, target, lse, grad_output, weight, ignore_index, label_smoothing, reduction, out):
    z, t, w, eps = _xent_args(logits, target, weight, ignore_index, label_smoothing, reduction)
    b = z.shape[0]
    lse = lse if isinstance(lse, np.ndarray) else np.asarray(lse)
    if lse.dtype != np.float64 or lse.shape != (b,):
        raise ValueError(f"lse must be the forward's float64 log-sum-exps of shape ({b},), got {lse.dtype} "
                         f"of shape {lse.shape}")
    g = _grad_output(grad_output, b, reduction)
    if reduction == "none":
        scale = g.copy()
    else:
        scale = np.full(b, float(g))
        if reduction == "mean":
            denom = _xent_denominator(t, w, ignore_index)
            scale = scale / denom if denom != 0.0 else np.zeros(b)  # every target ignored: no gradient
    if t.ndim == 1:
        scale[t == ignore_index] = 0.0
    dz = _C.empty(z.shape, z.dtype) if out is None else out
    bwd(z, t, w, eps, int(ignore_index), np.ascontiguousarray(lse), scale.astype(np.float32), dz)
    return dz


def softmax_cross_entropy_backward(logits, target, lse, grad_output=1.0, *, weight=None, ignore_index=-100,
                                   label_smoothing=0.0, reduction="mean", out=None):
    """Gradient of :func:`softmax_cross_entropy` with respect to the logits.

    ``lse`` is the forward's (``return_lse=True``); ``grad_output`` the loss's gradient (a
    scalar, or one per row with ``reduction='none'``); the other arguments as the forward's.
    Computes ``(softmax - target) · scale`` in one pass, reading the logits once and writing
    once. ``out=logits`` writes the gradient over the logits in place (training never needs
    them again); otherwise ``out`` is any float32 C-contiguous array of their shape.
    """
    return _xent_backward(_C.cross_entropy_bwd, logits, target, lse, grad_output, weight, ignore_index, label_smoothing,
                          reduction, out)


def softmax_cross_entropy_backward_ref(logits, target, lse, grad_output=1.0, *, weight=None, ignore_index=-100,
                                       label_smoothing=0.0, reduction="mean", out=None):
    """Reference :func:`softmax_cross_entropy_backward` (plain loops, double accumulation)."""
    return _xent_backward(_C.cross_entropy_bwd_ref, logits, target, lse, grad_output, weight, ignore_index, label_smoothing,
                          reduction, out)


def linear_cross_entropy(hidden, weight, target, bias=None, *, class_weight=None, ignore_index=-100,
                         label_smoothing=0.0, reduction="mean", grad_output=1.0, chunk_bytes=64 << 20):
    """Cross-entropy of the linear layer ``hidden @ weightᵀ + bias`` and its gradients, without
    ever building the batch x classes logits.

    ``hidden``: float32 (batch, features); ``weight``: float32 (classes, features); ``bias``:
    float32 (classes,) or None; ``target`` and the loss options as
    :func:`softmax_cross_entropy` (``class_weight`` is its ``weight``). Returns
    ``(loss, d_hidden, d_weight, d_bias)`` (``d_bias`` None without a bias), the gradients
    those of ``grad_output`` times the loss (one value per row with ``reduction='none'``).

    Rows are processed in chunks of at most ``chunk_bytes`` of logits: each chunk's logits are
    computed by the GEMM, reduced to its loss and turned into its gradient in place, which two
    more GEMMs send into ``d_hidden`` and ``d_weight``. The GEMMs are the unfused path's, so
    the time is about the same, while the memory held for logits is one chunk instead of all.
    """
    h = hidden if isinstance(hidden, np.ndarray) else np.asarray(hidden)
    w = weight if isinstance(weight, np.ndarray) else np.asarray(weight)
    for name, a in (("hidden", h), ("weight", w)):
        if a.dtype != np.float32:
            raise TypeError(f"{name} must have dtype float32, got {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    b, d = h.shape
    v = w.shape[0]
    if w.shape[1] != d:
        raise ValueError(f"weight must have shape (classes, {d}) to match hidden {h.shape}, got {w.shape}")
    if v < 1:
        raise ValueError(f"weight must have at least one class, got shape {w.shape}")
    if bias is not None:
        bias = _as_f32(bias, "bias")
        if bias.shape != (v,):
            raise ValueError(f"bias must have shape ({v},) (one value per class), got {bias.shape}")
    t, cw, eps = _xent_targets((b, v), target, class_weight, ignore_index, label_smoothing, reduction)
    if t.ndim == 1:  # checked here, not chunk by chunk, so that the error names the batch's row
        bad = (t != ignore_index) & ((t < 0) | (t >= v))
        if bad.any():
            r = int(np.argmax(bad))
            raise ValueError(f"target[{r}] = {t[r]} is neither a class in [0, {v}) nor ignore_index ({ignore_index})")
    g = _grad_output(grad_output, b, reduction)
    denom = _xent_denominator(t, cw, ignore_index)
    if int(chunk_bytes) < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes!r}")
    rows = max(1, min(b, int(chunk_bytes) // (4 * v)))

    d_hidden = _C.empty((b, d), np.float32)
    d_weight = np.zeros((v, d), np.float32)
    d_bias = np.zeros(v, np.float64) if bias is not None else None
    row_loss = np.empty(b)
    logits = _C.empty((rows, v), np.float32)
    for r0 in range(0, b, rows):
        r1 = min(b, r0 + rows)
        z = logits[: r1 - r0]
        gemm(h[r0:r1], w, trans_b=True, bias=bias, out=z)
        tc = t[r0:r1]
        lse, nll, smooth = np.empty(r1 - r0), np.empty(r1 - r0), np.empty(r1 - r0)
        _C.cross_entropy_fwd(z, tc, cw, eps, int(ignore_index), lse, nll, smooth)
        row_loss[r0:r1] = nll if t.ndim == 2 else (1.0 - eps) * nll + (eps / v) * smooth
        if reduction == "none":
            scale = g[r0:r1].copy()
        elif reduction == "sum":
            scale = np.full(r1 - r0, float(g))
        else:
            scale = np.full(r1 - r0, float(g) / denom if denom != 0.0 else 0.0)
        if t.ndim == 1:
            scale[tc == ignore_index] = 0.0
        _C.cross_entropy_bwd(z, tc, cw, eps, int(ignore_index), lse, scale.astype(np.float32), z)  # dlogits, in place
        gemm(z, w, out=d_hidden[r0:r1])
        gemm(z, h[r0:r1], trans_a=True, out=d_weight, beta=1.0)
        if d_bias is not None:
            d_bias += z.sum(axis=0, dtype=np.float64)
    if reduction == "none":
        loss = row_loss.astype(np.float32)
    elif reduction == "sum":
        loss = np.float32(row_loss.sum())
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.float32(row_loss.sum() / denom)
    return loss, d_hidden, d_weight, (d_bias.astype(np.float32) if d_bias is not None else None)
