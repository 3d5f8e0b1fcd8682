"""Quantized matrix products on packed weights (``ember.quant`` quantizes and packs them; the
layout and the exact integer arithmetic are in ``csrc/ops/qmatmul/qmatmul.h``):
``out = x @ dequant(W)ᵀ + bias`` with float32 activations quantized to int8 inside the call."""

from __future__ import annotations

from .. import backend
from . import _common

_F32 = (_common.FLOAT32,)


# Packing runs on the host, once per weight (``ember.quant.quantize_weight`` makes the buffers).
def quantize_pack(w, bits, group_size, data, scales, colsum):
    """Packs a float32 (N, K) host weight as int8 with one scale per channel (``bits=8``, group
    size 0) or as int4 in groups, filling ``data``, ``scales`` and (int8) ``colsum``."""
    _common.native(backend.CPU, "quantize_pack")(w, bits, group_size, data, scales, colsum)


def quantize_pack_int8g(w, group_size, data, scales):
    """Packs a float32 (N, K) host weight as int8 in groups of ``group_size`` with e6m10 scales."""
    _common.native(backend.CPU, "quantize_pack_int8g")(w, group_size, data, scales)


def quantize_pack_cb(w, data, scales):
    """Packs a float32 (N, K) host weight in the int4 codebook format."""
    _common.native(backend.CPU, "quantize_pack_cb")(w, data, scales)


def int4_codebook() -> tuple:
    """The int4 codebook format's 16 levels, as the kernels hold them."""
    return tuple(_common.native(backend.CPU, "int4_codebook"))


def _args(dev, x, n, bias, out):
    x = _common.array(x, "input", dev, _F32, 2)
    if x.shape[1] > 1 and x.strides[1] != x.itemsize:  # the kernels read each row as contiguous
        x = dev.xp.ascontiguousarray(x)
    if bias is not None:
        bias = _common.array(bias, "bias", dev, _F32, 1, contiguous=True)
    if out is None:
        out = dev.empty((x.shape[0], n), _common.FLOAT32)
    else:
        out = _common.array(out, "out", dev, _F32, 2)
    return x, bias, out


def qmatmul_int8(x, data, scales, colsum, n, k, bias=None, out=None, *, reference=False):
    """W8A8: ``x`` (M, K) float32 against an int8 weight of logical shape (N, K) packed as
    ``data`` (int8), ``scales`` (float32, one per output channel) and ``colsum`` (int32);
    activations quantized per row. Returns ``out`` (M, N)."""
    dev = _common.device(x=x, data=data, out=out)
    x, bias, out = _args(dev, x, n, bias, out)
    k_fn = _common.native(dev, "qmatmul_int8_ref" if reference else "qmatmul_int8")
    k_fn(x, data, scales, colsum, int(n), int(k), bias, out, **dev.launch())
    return out


def qmatmul_int8g(x, data, scales, n, k, group_size, bias=None, out=None, *, reference=False):
    """W8A8 in groups: ``x`` (M, K) float32 against an int8 weight of logical shape (N, K) packed as
    ``data`` (uint8: q + 128) and ``scales`` (uint16 e6m10 bits, one per output channel and group
    of ``group_size`` inputs); activations quantized per row and group. Returns ``out``."""
    dev = _common.device(x=x, data=data, out=out)
    x, bias, out = _args(dev, x, n, bias, out)
    k_fn = _common.native(dev, "qmatmul_int8g_ref" if reference else "qmatmul_int8g")
    k_fn(x, data, scales, int(n), int(k), int(group_size), bias, out, **dev.launch())
    return out


def qmatmul_int4(x, data, scales, n, k, group_size, bias=None, out=None, *, reference=False):
    """W4A8: ``x`` (M, K) float32 against an int4 weight of logical shape (N, K) packed as
    ``data`` (uint8, two values per byte) and ``scales`` (float32, one per output channel and
    group of ``group_size`` inputs); activations quantized per row and group. Returns ``out``."""
    dev = _common.device(x=x, data=data, out=out)
    x, bias, out = _args(dev, x, n, bias, out)
    k_fn = _common.native(dev, "qmatmul_int4_ref" if reference else "qmatmul_int4")
    k_fn(x, data, scales, int(n), int(k), int(group_size), bias, out, **dev.launch())
    return out


def qmatmul_int4cb(x, data, scales, n, k, bias=None, out=None, *, reference=False):
    """W4A8 with the int4 codebook format: ``x`` (M, K) float32 against a weight of logical shape
    (N, K) packed as ``data`` (uint8, two 4-bit codebook indices per byte) and ``scales`` (uint8: per
    16 channels and 256 inputs, 16 float32 scales and 16 x 16 six-bit sub-block scales);
    activations quantized per row and 256 inputs. Returns ``out``."""
    dev = _common.device(x=x, data=data, out=out)
    x, bias, out = _args(dev, x, n, bias, out)
    k_fn = _common.native(dev, "qmatmul_int4cb_ref" if reference else "qmatmul_int4cb")
    k_fn(x, data, scales, int(n), int(k), bias, out, **dev.launch())
    return out


def qmatmul_int8_ref(x, data, scales, colsum, n, k, bias=None, out=None):
    """Reference :func:`qmatmul_int8` (the same integers, from an int64 accumulation)."""
    return qmatmul_int8(x, data, scales, colsum, n, k, bias, out, reference=True)


def qmatmul_int8g_ref(x, data, scales, n, k, group_size, bias=None, out=None):
    """Reference :func:`qmatmul_int8g`."""
    return qmatmul_int8g(x, data, scales, n, k, group_size, bias, out, reference=True)


def qmatmul_int4_ref(x, data, scales, n, k, group_size, bias=None, out=None):
    """Reference :func:`qmatmul_int4`."""
    return qmatmul_int4(x, data, scales, n, k, group_size, bias, out, reference=True)


def qmatmul_int4cb_ref(x, data, scales, n, k, bias=None, out=None):
    """Reference :func:`qmatmul_int4cb`."""
    return qmatmul_int4cb(x, data, scales, n, k, bias, out, reference=True)
