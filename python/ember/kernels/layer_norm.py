"""Layer and RMS normalisation over the trailing dimensions, forward and backward in one pass
per row (``ember._C.layer_norm_fwd`` / ``layer_norm_bwd``, ``rms_norm_fwd`` / ``rms_norm_bwd``):
float32 or float64, any leading dimensions folded into rows. Devices without the kernels get the
same arithmetic from their array library.
"""

from __future__ import annotations

import math

from . import _common


def _rows(x, normalized_shape):
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k:]) != tuple(normalized_shape) or x.ndim < k:
        raise ValueError(f"layer_norm: input of shape {tuple(x.shape)} does not end in {tuple(normalized_shape)}")
    n = math.prod(normalized_shape)
    return (x.size // n if n else 0), n


def _affine(value, name, dev, x, normalized_shape, n):
    """A weight or bias over ``normalized_shape`` (any shape of its n elements), flat; None stays None."""
    if value is None:
        return None
    a = _common.array(value, name, dev, (x.dtype,), contiguous=True)
    if a.size != n:
        raise ValueError(f"layer_norm: {name} has shape {tuple(a.shape)}, not the normalized shape "
                         f"{tuple(normalized_shape)}")
    return a.reshape(n)


def _backward_operands(what, grad_output, input, normalized_shape, weight):
    """(device, input, grad_output, weight or None, rows, n) of a backward, checked."""
    dev = _common.device(grad_output=grad_output, input=input, weight=weight)
    x = _common.array(input, "input", dev, contiguous=True)
    rows, n = _rows(x, normalized_shape)
    g = _common.array(grad_output, "grad_output", dev, (x.dtype,), contiguous=True)
    if g.shape != x.shape:
        raise ValueError(f"{what}: grad_output has shape {tuple(g.shape)} but input has {tuple(x.shape)}")
    return dev, x, g, _affine(weight, "weight", dev, x, normalized_shape, n), rows, n


def layer_norm_fwd(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """(out, mean, rstd): ``(input - mean) / sqrt(var + eps) * weight + bias`` over the trailing
    ``normalized_shape`` dimensions, and each row's mean and 1 / sqrt(var + eps) (for the backward)."""
    dev = _common.device(input=input, weight=weight, bias=bias)
    x = _common.array(input, "input", dev, contiguous=True)
    rows, n = _rows(x, normalized_shape)
    w, b = _affine(weight, "weight", dev, x, normalized_shape, n), _affine(bias, "bias", dev, x, normalized_shape, n)
    y, mean, rstd = dev.empty(x.shape, x.dtype), dev.empty((rows,), x.dtype), dev.empty((rows,), x.dtype)
    dev.kernels.layer_norm_fwd(x.reshape(rows, n), w, b, float(eps), y.reshape(rows, n), mean, rstd, **dev.launch())
    return y, mean, rstd


def layer_norm_bwd(grad_output, input, normalized_shape, weight, mean, rstd, *, weight_grad=True, bias_grad=True):
    """(dinput, dweight, dbias) of :func:`layer_norm_fwd` for ``grad_output``; dweight and dbias
    (shaped as ``normalized_shape``) are None when not asked for."""
    dev, x, g, w, rows, n = _backward_operands("layer_norm", grad_output, input, normalized_shape, weight)
    dx = dev.empty(x.shape, x.dtype)
    dw = dev.empty(tuple(normalized_shape), x.dtype) if weight_grad else None
    db = dev.empty(tuple(normalized_shape), x.dtype) if bias_grad else None
    dev.kernels.layer_norm_bwd(g.reshape(rows, n), x.reshape(rows, n), w, mean, rstd, dx.reshape(rows, n),
                               None if dw is None else dw.reshape(n), None if db is None else db.reshape(n),
                               **dev.launch())
    return dx, dw, db


def rms_norm_fwd(input, normalized_shape, weight=None, eps: float = 1e-6):
    """(out, rstd): ``input / sqrt(mean(input²) + eps) * weight`` over the trailing
    ``normalized_shape`` dimensions, and each row's 1 / sqrt(mean(input²) + eps)."""
    dev = _common.device(input=input, weight=weight)
    x = _common.array(input, "input", dev, contiguous=True)
    rows, n = _rows(x, normalized_shape)
    w = _affine(weight, "weight", dev, x, normalized_shape, n)
    y, rstd = dev.empty(x.shape, x.dtype), dev.empty((rows,), x.dtype)
    dev.kernels.rms_norm_fwd(x.reshape(rows, n), w, float(eps), y.reshape(rows, n), rstd, **dev.launch())
    return y, rstd


def rms_norm_bwd(grad_output, input, normalized_shape, weight, rstd, *, weight_grad=True):
    """(dinput, dweight) of :func:`rms_norm_fwd` for ``grad_output``; dweight is None when not
    asked for."""
    dev, x, g, w, rows, n = _backward_operands("rms_norm", grad_output, input, normalized_shape, weight)
    dx = dev.empty(x.shape, x.dtype)
    dw = dev.empty(tuple(normalized_shape), x.dtype) if weight_grad else None
    dev.kernels.rms_norm_bwd(g.reshape(rows, n), x.reshape(rows, n), w, rstd, dx.reshape(rows, n),
                             None if dw is None else dw.reshape(n), **dev.launch())
    return dx, dw
