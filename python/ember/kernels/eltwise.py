"""Elementwise kernels: ReLU forward and backward, erf. float32 or float64, C-contiguous;
``out`` may be the input itself (elementwise, so in place is exact)."""

from __future__ import annotations

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
    """``where(output > 0, grad_output, 0)``, ``output`` being :func:`relu_fwd`'s: the gradient is
    zero wherever the unit is off (and where its output is NaN)."""
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
