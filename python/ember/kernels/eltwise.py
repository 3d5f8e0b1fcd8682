"""Elementwise kernels: ReLU forward and backward, erf, GELU forward and backward. float32 or
float64, C-contiguous; ``out`` may be the input itself (elementwise, so in place is exact)."""

from __future__ import annotations

import math

from . import _common


def _out(dev, like, out, name="out"):
    if out is None:
        return dev.empty(like.shape, like.dtype)
    out = _common.array(out, name, dev, (like.dtype,))
    if out.shape != like.shape:
        raise ValueError(f"{name} has shape {out.shape} but the input has shape {like.shape}")
    return out


def relu_fwd(input, out=None):
    """``maximum(input, 0)``, NaN kept (PyTorch's rule)."""
    dev = _common.device(input=input, out=out)
    x = _common.array(input, "input", dev, contiguous=True)
    y = _out(dev, x, out)
    _common.native(dev, "relu_fwd")(x, y, **dev.launch())
    return y


def relu_bwd(grad_output, output, out=None):
    """``where(output <= 0, 0, grad_output)``, ``output`` being :func:`relu_fwd`'s: the gradient is
    zero wherever the unit is off, and passes where its output is NaN (as PyTorch's)."""
    dev = _common.device(grad_output=grad_output, output=output, out=out)
    g = _common.array(grad_output, "grad_output", dev, contiguous=True)
    y = _common.array(output, "output", dev, (g.dtype,), contiguous=True)
    dx = _out(dev, g, out)
    _common.native(dev, "relu_bwd")(g, y, dx, **dev.launch())
    return dx


def erf(input, out=None):
    """The error function, elementwise."""
    dev = _common.device(input=input, out=out)
    x = _common.array(input, "input", dev, contiguous=True)
    y = _out(dev, x, out)
    _common.native(dev, "erf")(x, y, **dev.launch())
    return y


def gelu_fwd(input, out=None):
    """``input * (0.5 * (1 + erf(input / sqrt(2))))``: GELU with the exact normal CDF, each step
    rounded to the input's dtype, in one pass (a device without the fused kernel computes the
    same expression step by step)."""
    dev = _common.device(input=input, out=out)
    x = _common.array(input, "input", dev, contiguous=True)
    y = _out(dev, x, out)
    if hasattr(dev.kernels, "gelu_fwd"):
        dev.kernels.gelu_fwd(x, y, **dev.launch())
    else:
        y[...] = x * (0.5 * (1 + erf(x / x.dtype.type(math.sqrt(2.0)))))
    return y


def gelu_bwd(grad_output, input, out=None):
    """``grad_output * (cdf + input * pdf)``, the gradient of :func:`gelu_fwd` at ``input``."""
    dev = _common.device(grad_output=grad_output, input=input, out=out)
    g = _common.array(grad_output, "grad_output", dev, contiguous=True)
    x = _common.array(input, "input", dev, (g.dtype,), contiguous=True)
    dx = _out(dev, g, out)
    if hasattr(dev.kernels, "gelu_bwd"):
        dev.kernels.gelu_bwd(g, x, dx, **dev.launch())
    else:
        cdf = 0.5 * (1 + erf(x / x.dtype.type(math.sqrt(2.0))))
        pdf = dev.xp.exp(-0.5 * x * x) / x.dtype.type(math.sqrt(2 * math.pi))
        dx[...] = g * (cdf + x * pdf)
    return dx
