"""Argument parsing and output sizes for convolution and pooling, PyTorch's rules.

Every check raises TypeError or ValueError naming the argument and what it got, before any
native code runs; the bindings check again that arrays and sizes agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    h, w = int(value[0]), int(value[1])
    if h < minimum or w < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {(h, w)}")
    return h, w


# Every geometry value and extent stays below 2**62, so that the kernels' index arithmetic
# (a tap's position i * stride - padding + p * dilation, sums of two extents) fits in int64.
MAX_EXTENT = 1 << 62


def _bounded(value: int, name: str, what: str = "") -> int:
    if value >= MAX_EXTENT:
        raise ValueError(f"{name}{what} is {value}, too large: convolution and pooling geometry must stay below 2**62")
    return value


def _check_axis(size: int, out: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int, axis: str) -> None:
    """Bound every extent the kernels compute along one axis (see MAX_EXTENT)."""
    _bounded(stride, "stride")
    _bounded(max(pad_lo, pad_hi), "padding")
    _bounded(dilation, "dilation")
    _bounded(dilation * (k - 1) + 1, "dilation", f" x (kernel - 1) + 1 along the {axis}")
    _bounded(size + pad_lo + pad_hi, "padding", f" + input along the {axis}")
    _bounded((out - 1) * stride + dilation * (k - 1) + 1, "stride", f" x (output - 1) + window along the {axis}")


# The most elements an array of these shapes may have: its float64 bytes fit in a signed
# 64-bit size, as NumPy's and CuPy's allocations require. NumPy counts the non-zero
# dimensions even of an empty array.
MAX_ELEMENTS = (2**63 - 1) // 8


def fits(shape, what: str) -> None:
    """ValueError naming ``what`` when an array of ``shape`` would be larger than any array."""
    extent = math.prod(d for d in shape if d)
    if extent > MAX_ELEMENTS:
        raise ValueError(f"{what} is too big: its non-zero dimensions span {extent} elements, more than any array "
                         "can hold")


def shape4(shape, name: str) -> tuple[int, int, int, int]:
    """A shape (N, C, H, W) of non-negative ints that an array can have."""
    if (isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__")
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape)):
        raise TypeError(f"{name} must be a sequence of 4 ints, got {shape!r}")
    dims = tuple(int(d) for d in shape)
    if len(dims) != 4 or min(dims) < 0:
        raise ValueError(f"{name} must be 4 non-negative ints (N, C, H, W), got {shape!r}")
    fits(dims, f"{name} {dims}")
    return dims


@dataclass(frozen=True)
class Conv2dGeometry:
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    oh: int
    ow: int
    stride: tuple[int, int]
    pad_top_left: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.o, self.oh, self.ow)

    def native_args(self) -> tuple[int, ...]:
        return (*self.stride, *self.pad_top_left, *self.dilation, self.groups)


def conv2d_geometry(input_shape, weight_shape, stride, padding, dilation, groups) -> Conv2dGeometry:
    n, c, h, w = input_shape
    if len(weight_shape) != 4:
        raise ValueError(f"weight must be 4-D (out_channels, in_channels/groups, KH, KW), got shape {weight_shape}")
    o, cg, kh, kw = weight_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if c % groups or o % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels ({c}, input shape {tuple(input_shape)}) "
            f"and the output channels ({o}, weight shape {tuple(weight_shape)})"
        )
    if cg * groups != c:
        raise ValueError(
            f"input has {c} channels (shape {tuple(input_shape)}) but weight {tuple(weight_shape)} expects "
            f"{cg * groups} ({cg} per group x {groups} groups)"
        )
    if kh < 1 or kw < 1 or o < 1:
        raise ValueError(f"weight must have at least one output channel and a kernel of at least 1x1, got {weight_shape}")
    sh, sw = pair(stride, "stride", 1)
    dh, dw = pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride {(sh, sw)}")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        else:
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = pair(padding, "padding", 0)
        pads = ((ph, ph), (pw, pw))
    (pt, pb), (pl, pr) = pads
    _bounded(max(sh, sw), "stride")
    _bounded(max(dh, dw), "dilation")
    _bounded(max(pt, pb, pl, pr), "padding")
    eff_h, eff_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if eff_h > h + pt + pb or eff_w > w + pl + pr:
        raise ValueError(
            f"kernel {kh}x{kw} (dilation {(dh, dw)}, spanning {eff_h}x{eff_w}) is larger than the padded input "
            f"{h + pt + pb}x{w + pl + pr} (input shape {tuple(input_shape)}, padding {padding!r})"
        )
    oh = (h + pt + pb - eff_h) // sh + 1
    ow = (w + pl + pr - eff_w) // sw + 1
    _check_axis(h, oh, kh, sh, pt, pb, dh, "height")
    _check_axis(w, ow, kw, sw, pl, pr, dw, "width")
    fits((n, o, oh, ow), f"the output {(n, o, oh, ow)} of input shape {tuple(input_shape)} with padding {padding!r}")
    return Conv2dGeometry(n, c, h, w, o, kh, kw, oh, ow, (sh, sw), (pt, pl), (dh, dw), groups)


def pool_output_size(size: int, k: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; with ceil_mode the last window must start inside the
    input or its left padding."""
    numerator = size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class Pool2dGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    oh: int
    ow: int

    def native_args(self) -> tuple[int, ...]:
        return (*self.kernel, *self.stride, *self.padding)


def pool2d_geometry(input_shape, kernel_size, stride, padding, dilation, ceil_mode) -> Pool2dGeometry:
    _, _, h, w = input_shape
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = pair(kernel_size if stride is None else stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dh, dw = pair(dilation, "dilation", 1)
    for v, name in ((max(kh, kw), "kernel_size"), (max(sh, sw), "stride"), (max(ph, pw), "padding"),
                    (max(dh, dw), "dilation")):
        _bounded(v, name)
    if ph > (dh * (kh - 1) + 1) // 2 or pw > (dw * (kw - 1) + 1) // 2:
        raise ValueError(
            f"padding {(ph, pw)} must be at most half the (dilated) kernel size {(kh, kw)}"
        )
    oh = pool_output_size(h, kh, ph, sh, dh, bool(ceil_mode))
    ow = pool_output_size(w, kw, pw, sw, dw, bool(ceil_mode))
    if oh < 1 or ow < 1:
        raise ValueError(
            f"output size {oh}x{ow} is too small: input shape {tuple(input_shape)}, kernel_size {(kh, kw)}, "
            f"stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}"
        )
    _check_axis(h, oh, kh, sh, ph, ph, dh, "height")
    _check_axis(w, ow, kw, sw, pw, pw, dw, "width")
    out = (*input_shape[:2], oh, ow)
    fits(out, f"the output {out} of input shape {tuple(input_shape)} with padding {(ph, pw)}")
    return Pool2dGeometry((kh, kw), (sh, sw), (ph, pw), (dh, dw), oh, ow)
