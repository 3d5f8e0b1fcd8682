"""2-D convolution, PyTorch's ``F.conv2d`` semantics: NCHW input, OIHW weight, forward and both
backward passes. float32 on the fast kernels; float32 and float64 on the references."""

from __future__ import annotations

from . import _common, _geometry


def _inputs(dev, **arrays):
    return {name: _common.array(a, name, dev, ndim=4, contiguous=True) for name, a in arrays.items()}


def conv2d_fwd(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False, *,
               reference=False, bf16=False):
    """``act(conv(input, weight) + bias)``: N x O x OH x OW.

    ``padding`` is an int, a pair, ``'same'`` (stride 1; an even kernel pads one more at the
    bottom/right) or ``'valid'``. ``relu=True`` fuses a ReLU. The CPU kernels choose the
    algorithm by the layer's shape (Winograd for 3x3 at unit stride, per-tap GEMMs over the
    padded input, direct kernels for few or single input channels per group, implicit GEMM
    otherwise); none builds the im2col matrix. ``bf16=True`` (float32 arrays, ``groups=1``, the
    CPU) rounds input and weight to bf16 and sums every product in float32: one bf16 GEMM per
    image (AMX tiles or ``vdpbf16ps``), its im2col columns gathered as it packs them.
    """
    if bf16 and groups != 1:
        raise ValueError(f"conv2d_fwd: bf16 takes groups=1 only, got groups={groups}")
    dev = _common.device(input=input, weight=weight, bias=bias)
    a = _inputs(dev, input=input, weight=weight)
    x, w = a["input"], a["weight"]
    _common.same_dtype(x, weight=w)
    g = _geometry.conv2d_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    if bias is not None:
        bias = _common.array(bias, "bias", dev, (x.dtype,), 1, contiguous=True)
        if bias.shape != (g.o,):
            raise ValueError(f"bias must have shape ({g.o},) (one value per output channel), got {bias.shape}")
    y = dev.empty(g.output_shape, x.dtype)
    _kernel(dev, "conv2d_fwd", reference, bf16, x.dtype)(x, w, bias, y, *g.native_args(), bool(relu), **dev.launch())
    return y


def bf16_pays(input, weight, stride=1, padding=0, dilation=1, groups=1) -> tuple[bool, bool]:
    """Whether bf16 products are worth taking for this layer's forward (and weight gradient) and
    for its input gradient: float32 arrays of a device with the bf16 kernels, ``groups=1``, and
    at least 64 products per output value (C x KH x KW forward, O x KH x KW backward: below that
    -- a first layer on RGB images -- the float32 kernels are as fast); the input gradient also
    needs unit stride and padding within the kernel's reach."""
    dev = _common.device(input=input, weight=weight)
    if not (groups == 1 and input.dtype == _common.FLOAT32 and weight.dtype == _common.FLOAT32
            and input.ndim == 4 and weight.ndim == 4 and hasattr(dev.kernels, "conv2d_fwd_bf16")):
        return False, False
    g = _geometry.conv2d_geometry(input.shape, weight.shape, stride, padding, dilation, groups)
    o, c, kh, kw = weight.shape
    reach = ((kh - 1) * g.dilation[0], (kw - 1) * g.dilation[1])
    data = (g.stride == (1, 1) and g.pad_top_left[0] <= reach[0] and g.pad_top_left[1] <= reach[1]
            and o * kh * kw >= 64)
    return c * kh * kw >= 64, data


def conv2d_bwd_data(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *,
                    reference=False, bf16=False):
    """Gradient of :func:`conv2d_fwd` with respect to its input: N x C x H x W.

    Needs only the weight and ``grad_output`` (a frozen layer never computes the weight
    gradient). With a fused ReLU, ``grad_output`` must already be zero where the output was
    clamped. At unit stride this is the forward convolution of ``grad_output`` with the flipped
    kernel; otherwise column blocks of ``weightᵀ @ grad_output`` are scattered straight into the
    result. The column matrix is never built whole. ``bf16=True`` (float32 arrays, the CPU,
    ``groups=1``, unit stride, padding at most ``(kernel - 1) * dilation``) rounds
    ``grad_output`` and the weight to bf16 and sums the products in float32, as the bf16
    forward of ``grad_output`` with the flipped kernel.
    """
    dev = _common.device(grad_output=grad_output, weight=weight)
    a = _inputs(dev, grad_output=grad_output, weight=weight)
    dy, w = a["grad_output"], a["weight"]
    _common.same_dtype(dy, weight=w)
    in_shape = _geometry.shape4(input_shape, "input_shape")
    g = _geometry.conv2d_geometry(in_shape, w.shape, stride, padding, dilation, groups)
    if dy.shape != g.output_shape:
        raise ValueError(f"grad_output must have the forward output's shape {g.output_shape}, got {dy.shape}")
    dx = dev.empty(in_shape, dy.dtype)
    _kernel(dev, "conv2d_bwd_data", reference, bf16, dy.dtype)(dy, w, dx, *g.native_args(), **dev.launch())
    return dx


def conv2d_bwd_weight(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1, bias=False, *,
                      reference=False, bf16=False):
    """Gradients of :func:`conv2d_fwd` with respect to the weight and (if ``bias``) the bias:
    returns ``(grad_weight, grad_bias or None)``.

    Needs only the input and ``grad_output`` (the first layer never computes an input
    gradient). Summed over the images by Winograd F(3x3, 2x2), per-tap GEMMs, direct kernels or
    ``grad_output @ im2col(input)ᵀ`` with the transposed im2col matrix packed block by block
    straight from the input, by the layer's shape; threads sum their own images, so the order
    of summation (not its accuracy) depends on the thread count. ``bf16=True`` (float32 arrays,
    the CPU, ``groups=1``) rounds input and ``grad_output`` to bf16 and sums the products in
    float32 (``im2col(input) @ grad_outputᵀ`` per image, on AMX tiles or ``vdpbf16ps``); the
    bias gradient is summed from the float32 ``grad_output``.
    """
    dev = _common.device(input=input, grad_output=grad_output)
    a = _inputs(dev, input=input, grad_output=grad_output)
    x, dy = a["input"], a["grad_output"]
    _common.same_dtype(x, grad_output=dy)
    w_shape = _geometry.shape4(weight_shape, "weight_shape")
    g = _geometry.conv2d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    if dy.shape != g.output_shape:
        raise ValueError(f"grad_output must have the forward output's shape {g.output_shape}, got {dy.shape}")
    dw = dev.empty(w_shape, x.dtype)
    db = dev.empty((g.o,), x.dtype) if bias else None
    _kernel(dev, "conv2d_bwd_weight", reference, bf16, x.dtype)(x, dy, dw, db, *g.native_args(), **dev.launch())
    return dw, db


def _kernel(dev, name, reference, bf16, dtype):
    """The native kernel of a door: its bf16 form (float32 arrays only, no reference), its
    reference, or the fast one."""
    if not bf16:
        return _common.kernel(dev, name, reference, dtype)
    if reference:
        raise ValueError(f"{name}: bf16 has no reference of its own: compare with the reference on inputs rounded "
                         "to bf16")
    if dtype != _common.FLOAT32:
        raise TypeError(f"{name}: bf16 takes float32 arrays, got {dtype}")
    return _common.native(dev, f"{name}_bf16")


def conv2d_fwd_ref(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
    """Reference :func:`conv2d_fwd` (plain loops, double accumulation; float32 or float64)."""
    return conv2d_fwd(input, weight, bias, stride, padding, dilation, groups, relu, reference=True)


def conv2d_bwd_data_ref(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Reference :func:`conv2d_bwd_data`."""
    return conv2d_bwd_data(grad_output, weight, input_shape, stride, padding, dilation, groups, reference=True)


def conv2d_bwd_weight_ref(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1, bias=False):
    """Reference :func:`conv2d_bwd_weight`."""
    return conv2d_bwd_weight(input, grad_output, weight_shape, stride, padding, dilation, groups, bias,
                             reference=True)
