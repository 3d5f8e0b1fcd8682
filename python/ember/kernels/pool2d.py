"""2-D pooling, PyTorch's semantics over NCHW arrays: max (with the argmax indices its
backward needs), average and adaptive average, forward and backward. float32 on the fast
kernels; float32 and float64 on the references."""

from __future__ import annotations

import numpy as np

from . import _common, _geometry

_INDEX = (np.dtype(np.int64),)


def _nchw(x, name, dev):
    return _common.array(x, name, dev, ndim=4, contiguous=True)


def _grad(grad_output, dev, shape):
    dy = _nchw(grad_output, "grad_output", dev)
    if dy.shape != shape:
        raise ValueError(f"grad_output must have the forward output's shape {shape}, got {dy.shape}")
    return dy


def max_pool2d_fwd(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
                   *, reference=False):
    """Max pooling, PyTorch's ``F.max_pool2d``: the first maximum wins a tie, NaN wins over any
    number, padding is never chosen. With ``return_indices`` also the int64 flat ``h * W + w``
    position of each maximum in its input plane, which :func:`max_pool2d_bwd` needs."""
    dev = _common.device(input=input)
    x = _nchw(input, "input", dev)
    g = _geometry.pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = dev.empty(x.shape[:2] + (g.oh, g.ow), x.dtype)
    idx = dev.empty(y.shape, np.int64) if return_indices else None
    _common.kernel(dev, "max_pool2d_fwd", reference, x.dtype)(x, y, idx, *g.native_args(), *g.dilation,
                                                              **dev.launch())
    return (y, idx) if return_indices else y


def max_pool2d_bwd(grad_output, indices, input_shape, *, reference=False):
    """Gradient of max pooling: each output's gradient added at its argmax (``indices``)."""
    dev = _common.device(grad_output=grad_output, indices=indices)
    in_shape = _geometry.shape4(input_shape, "input_shape")
    dy = _nchw(grad_output, "grad_output", dev)
    idx = _common.array(indices, "indices", dev, _INDEX, contiguous=True)  # as max_pool2d_fwd returns
    if idx.shape != dy.shape:
        raise ValueError(f"indices must have grad_output's shape {dy.shape}, got {idx.shape}")
    dx = dev.empty(in_shape, dy.dtype)
    _common.kernel(dev, "max_pool2d_bwd", reference, dy.dtype)(dy, idx, dx, **dev.launch())
    return dx


def avg_pool2d_fwd(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
                   reference=False):
    """Average pooling, PyTorch's ``F.avg_pool2d`` semantics."""
    dev = _common.device(input=input)
    x = _nchw(input, "input", dev)
    g = _geometry.pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    y = dev.empty(x.shape[:2] + (g.oh, g.ow), x.dtype)
    _common.kernel(dev, "avg_pool2d_fwd", reference, x.dtype)(x, y, *g.native_args(), bool(count_include_pad),
                                                              **dev.launch())
    return y


def avg_pool2d_bwd(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                   count_include_pad=True, *, reference=False):
    """Gradient of :func:`avg_pool2d_fwd` with respect to its input."""
    dev = _common.device(grad_output=grad_output)
    in_shape = _geometry.shape4(input_shape, "input_shape")
    g = _geometry.pool2d_geometry(in_shape, kernel_size, stride, padding, 1, ceil_mode)
    dy = _grad(grad_output, dev, in_shape[:2] + (g.oh, g.ow))
    dx = dev.empty(in_shape, dy.dtype)
    _common.kernel(dev, "avg_pool2d_bwd", reference, dy.dtype)(dy, dx, *g.native_args(), bool(count_include_pad),
                                                               **dev.launch())
    return dx


def adaptive_avg_pool2d_fwd(input, output_size=1, *, reference=False):
    """Adaptive average pooling to ``output_size`` (an int or a pair); 1 is global average
    pooling. The input plane must not be empty."""
    dev = _common.device(input=input)
    x = _nchw(input, "input", dev)
    oh, ow = _geometry.pair(output_size, "output_size", 1)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"input has shape {x.shape}: adaptive pooling needs a non-empty H x W plane "
                         "(an empty one has no mean)")
    _geometry.fits(x.shape[:2] + (oh, ow), f"the output of output_size {(oh, ow)}")
    y = dev.empty(x.shape[:2] + (oh, ow), x.dtype)
    _common.kernel(dev, "adaptive_avg_pool2d_fwd", reference, x.dtype)(x, y, **dev.launch())
    return y


def adaptive_avg_pool2d_bwd(grad_output, input_shape, *, reference=False):
    """Gradient of :func:`adaptive_avg_pool2d_fwd` with respect to its input."""
    dev = _common.device(grad_output=grad_output)
    dy = _nchw(grad_output, "grad_output", dev)
    in_shape = _geometry.shape4(input_shape, "input_shape")
    dx = dev.empty(in_shape, dy.dtype)
    _common.kernel(dev, "adaptive_avg_pool2d_bwd", reference, dy.dtype)(dy, dx, **dev.launch())
    return dx


def max_pool2d_fwd_ref(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference :func:`max_pool2d_fwd`; returns ``(output, indices)``."""
    return max_pool2d_fwd(input, kernel_size, stride, padding, dilation, ceil_mode, True, reference=True)


def max_pool2d_bwd_ref(grad_output, indices, input_shape):
    """Reference :func:`max_pool2d_bwd`."""
    return max_pool2d_bwd(grad_output, indices, input_shape, reference=True)


def avg_pool2d_fwd_ref(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Reference :func:`avg_pool2d_fwd`."""
    return avg_pool2d_fwd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, reference=True)


def avg_pool2d_bwd_ref(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True):
    """Reference :func:`avg_pool2d_bwd`."""
    return avg_pool2d_bwd(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                          reference=True)


def adaptive_avg_pool2d_fwd_ref(input, output_size=1):
    """Reference :func:`adaptive_avg_pool2d_fwd`."""
    return adaptive_avg_pool2d_fwd(input, output_size, reference=True)


def adaptive_avg_pool2d_bwd_ref(grad_output, input_shape):
    """Reference :func:`adaptive_avg_pool2d_bwd`."""
    return adaptive_avg_pool2d_bwd(grad_output, input_shape, reference=True)
