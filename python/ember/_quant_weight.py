"""The packed quantized weight (``ember.quant.QuantizedWeight``) and ``quantize_weight``, which
makes one: the formats, their sizes and the products on Ember's integer kernels (the formats are
described in ``ember.quant``)."""

from __future__ import annotations

import math

import numpy as np

from . import _quant_codebook, backend
from .kernels import qmatmul as qmatmul_kernels
from .tensor import Tensor

BLOCK = 16  # output channels per packed block
# The packed layout's name, recorded in checkpoints: a future layout must not read old files as its own.
LAYOUT = "blocks16-v1"
GROUP_SIZES = (32, 64, 128)


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def _check_bits_group(bits, group_size, codebook=False):
    """The format's group size (None: int8 per channel, or the codebook format), after checking
    ``bits``, ``group_size`` (None: the format's default, 32 for int4) and ``codebook``."""
    if bits not in (8, 4):
        raise ValueError(f"bits must be 8 or 4, got {bits!r}")
    if not isinstance(codebook, (bool, np.bool_)):
        raise TypeError(f"codebook must be True or False, got {codebook!r}")
    if codebook and bits != 4:
        raise ValueError(f"codebook=True is an int4 format: bits must be 4, got {bits!r}")
    if codebook and group_size is not None:
        raise ValueError(f"group_size does not apply to codebook=True (its format has a scale per 16 inputs and a "
                         f"float scale per 256, fixed): leave group_size out, or drop codebook for int4 in groups; "
                         f"got group_size={group_size!r}")
    if codebook:
        return None
    if group_size is None:
        return 32 if bits == 4 else None
    if (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 8
            or group_size % 8 or group_size > 4096):
        raise ValueError(f"group_size must be a multiple of 8 from 8 to 4096 (32, 64 or 128 are usual) or None "
                         f"(int8: one scale per channel; int4: 32), got {group_size!r}")
    return int(group_size)


def packed_sizes(n: int, k: int, bits: int, group_size: int | None = None, codebook: bool = False) -> dict:
    """``{name: (dtype, elements)}`` of the packed arrays of an (N, K) weight: ``data``,
    ``scales`` and, for int8 per channel, ``colsum``."""
    group_size = _check_bits_group(bits, group_size, codebook)
    if codebook:
        return _quant_codebook.packed_sizes(n, k)
    np16 = _round_up(n, BLOCK)
    if bits == 8 and group_size is None:
        kp = _round_up(k, 4)
        return {"data": (np.int8, np16 * kp), "scales": (np.float32, np16), "colsum": (np.int32, np16)}
    kp = _round_up(k, group_size)
    if bits == 8:  # q + 128 as bytes, e6m10 scales
        return {"data": (np.uint8, np16 * kp), "scales": (np.uint16, np16 * (kp // group_size))}
    return {"data": (np.uint8, np16 * kp // 2), "scales": (np.float32, np16 * (kp // group_size))}


def e6m10_to_float(bits) -> np.ndarray:
    """The float32 values of grouped int8 scales stored as e6m10 bits (integers in [0, 65535],
    as uint16): 2^(e - 31) * (1 + m / 1024) for bits e << 10 | m."""
    raw = np.asarray(bits)
    if raw.dtype.kind not in "iu":
        raise TypeError(f"e6m10_to_float: bits must be integers (uint16), got {raw.dtype}")
    if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 0xFFFF):
        raise ValueError(f"e6m10_to_float: bits must lie in [0, 65535], got values from {int(raw.min())} to "
                         f"{int(raw.max())}")
    wide = (np.atleast_1d(raw).astype(np.uint32) << np.uint32(13)) + np.uint32((127 - 31) << 23)
    return wide.astype(np.uint32, copy=False).view(np.float32).reshape(raw.shape)  # uint32 under NumPy 1's rules too


def _int8_colsums(data, k: int):
    """Each channel's sum of the packed int8 values ``data`` of K inputs (padding included: it
    holds zeros when packed), as int64."""
    return data.astype(np.int64).reshape(-1, _round_up(k, 4) // 4, BLOCK, 4).sum(axis=(1, 3)).reshape(-1)


def _int8_problems(data, colsum, k: int, names=("weight_data", "weight_colsum")) -> list:
    """What is wrong with packed int8 values and their column sums (called ``names``): values
    outside [-127, 127] (the kernels' integer bounds), column sums other than the values give."""
    problems = []
    if data.size and int(data.min()) < -127:
        problems.append(f"{names[0]}: int8 weights must lie in [-127, 127], found -128")
    derived = _int8_colsums(data, k)
    bad = derived != colsum
    if bool(bad.any()):
        channel = int(np.argmax(backend.device_of(bad).to_host(bad)))
        problems.append(f"{names[1]}: channel {channel}'s column sum is {int(colsum[channel])}, "
                        f"its weights sum to {int(derived[channel])}")
    return problems


class QuantizedWeight:
    """A packed quantized weight of logical shape (N, K): ``data`` (the packed values),
    ``scales`` (float32; for grouped int8, uint16 e6m10 bits; for the int4 codebook format,
    uint8 bytes), ``colsum`` (int8 per channel only: each channel's sum of values, int32).
    ``matmul(x)`` computes ``x @ dequantize().T`` (plus ``bias``) on the integer kernels.

    The arrays are checked, not trusted: sizes and dtypes, float scales finite and > 0 (>= 0 for
    the codebook format's), and for int8 the values within [-127, 127] and ``colsum`` equal to
    their column sums (derived when None). ``check=False`` skips the last two, which read every
    value, for arrays Ember packed and checked itself."""

    def __init__(self, bits: int, shape, data, scales, colsum=None, group_size: int | None = None, *,
                 codebook: bool = False, check: bool = True):
        group_size = _check_bits_group(bits, group_size, codebook)
        n, k = (int(d) for d in shape)
        if n < 1 or k < 1 or k > 65536:
            raise ValueError(f"shape must be (N, K) with N >= 1 and 1 <= K <= 65536, got {tuple(shape)}")
        self.bits, self.shape, self.codebook, self.group_size = bits, (n, k), bool(codebook), group_size
        expect = packed_sizes(n, k, bits, group_size, codebook)
        if "colsum" not in expect and colsum is not None:
            raise ValueError("colsum belongs to int8 weights with one scale per channel only")
        arrays = {"data": data, "scales": scales, "colsum": colsum}
        for name, (dtype, size) in expect.items():
            a = arrays[name]
            if name == "colsum" and a is None:
                continue  # derived below from the checked values
            if not backend.is_array(a) or a.dtype != dtype:
                raise TypeError(f"QuantizedWeight: {name} must be a numpy array of {np.dtype(dtype)}, got "
                                f"{getattr(a, 'dtype', type(a).__name__)}")
            if a.size != size or not a.flags.c_contiguous:
                raise ValueError(f"QuantizedWeight: {name} must be C-contiguous with {size} elements for shape "
                                 f"{self.shape} (got {a.size}); it was packed for another shape or group size")
        if codebook:
            problems = _quant_codebook.scale_problems(backend.device_of(scales).to_host(scales), n, k, "scales")
            if problems:
                raise ValueError("QuantizedWeight: " + "; ".join(problems))
            self.data, self.scales, self.colsum = data, scales, None
            return
        if bits == 8 and group_size is not None:  # every e6m10 bit pattern is a positive finite scale
            if check and data.size and int(data.min()) < 1:
                raise ValueError("QuantizedWeight: data: int8 weights must lie in [-127, 127] (bytes 1 to 255), "
                                 "found -128 (byte 0)")
            self.data, self.scales, self.colsum = data, scales, None
            return
        xp = backend.namespace(scales)
        good = xp.isfinite(scales) & (scales > 0)
        if not bool(good.all()):
            bad = backend.device_of(scales).to_host(scales[~good])
            raise ValueError(f"QuantizedWeight: scales must be finite and > 0; found {bad[:3].tolist()}")
        if bits == 8 and colsum is None:
            colsum = _int8_colsums(data, k).astype(np.int32)
        if bits == 8 and check:
            problems = _int8_problems(data, colsum, k, ("data", "colsum"))
            if problems:
                raise ValueError("QuantizedWeight: " + "; ".join(problems))
        self.data, self.scales, self.colsum = data, scales, colsum

    @property
    def nbytes(self) -> int:
        """Bytes the kernels read: packed values, scales and (int8 per channel) column sums."""
        return int(self.data.nbytes + self.scales.nbytes + (self.colsum.nbytes if self.colsum is not None else 0))

    def _values(self) -> np.ndarray:
        """The quantized integers, (N, K) int8, unpacked (not for the codebook format)."""
        n, k = self.shape
        return self._unpacked(np.int16)[:n, :k].astype(np.int8)

    def _unpacked(self, dtype) -> np.ndarray:
        """The quantized integers as ``dtype`` (one that holds -128 to 255), in the packed rows and
        columns (N and K rounded up to the block and the group), on the packed bytes' device: one
        pass over those bytes."""
        if self.codebook:
            raise ValueError("the int4 codebook format has no integer values apart from its scales: "
                             "use dequantize()")
        n, k = self.shape
        np16 = _round_up(n, BLOCK)
        kp = _round_up(k, self.group_size or 4)
        q = backend.namespace(self.data).empty((np16, kp), dtype)
        if self.bits == 8:  # 16-row blocks of 4-column quads
            q.reshape(np16 // BLOCK, BLOCK, kp // 4, 4)[...] = \
                self.data.reshape(np16 // BLOCK, kp // 4, BLOCK, 4).transpose(0, 2, 1, 3)
            if self.group_size is not None:
                q -= 128  # grouped int8 is stored as value + 128
        else:  # a byte holds columns 8 o + j (low nibble) and 8 o + 4 + j (high), each value + 8
            b = self.data.reshape(np16 // BLOCK, kp // 8, BLOCK, 4).transpose(0, 2, 1, 3)
            halves = q.reshape(np16 // BLOCK, BLOCK, kp // 8, 2, 4)
            halves[..., 0, :] = b & 15
            halves[..., 1, :] = b >> 4
            q -= 8
        return q

    def dequantize(self) -> np.ndarray:
        """The float32 (N, K) weight these values and scales stand for."""
        n, k = self.shape
        if self.codebook:
            return _quant_codebook.dequantize(self.data, self.scales, n, k)
        w = self._unpacked(np.float32)[:n]
        if self.group_size is None:
            w *= self.scales[:n, None]
        else:
            groups = w.reshape(n, -1, self.group_size)
            groups *= self.group_scales()[:, :, None]
        return backend.namespace(w).ascontiguousarray(w[:, :k])

    def group_scales(self) -> np.ndarray:
        """The grouped formats' (int4, grouped int8) float32 scales as an (N, groups) array."""
        if self.group_size is None:
            raise ValueError("group_scales: this format has no groups")
        n, k = self.shape
        groups = _round_up(k, self.group_size) // self.group_size
        s = self.scales if self.bits == 4 else e6m10_to_float(self.scales)
        return s.reshape(-1, groups, BLOCK).transpose(0, 2, 1).reshape(-1, groups)[:n]

    def matmul(self, x, bias=None, out=None, reference=False) -> np.ndarray:
        """``x @ W.T + bias`` for float32 ``x`` of shape (..., K); ``reference=True`` runs the
        plain-loop reference (the same integers, slowly)."""
        x = x._data if isinstance(x, Tensor) else x
        if not hasattr(x, "dtype") or x.dtype != np.float32:
            raise TypeError(f"qmatmul: input must be a float32 array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim < 1 or x.shape[-1] != self.shape[1]:
            raise ValueError(f"qmatmul: input has shape {x.shape}, but the weight was quantized for "
                             f"K={self.shape[1]} inputs")
        lead = x.shape[:-1]
        shape2 = (math.prod(lead), self.shape[0])
        result = None
        if out is not None:
            if not hasattr(out, "dtype") or out.dtype != np.float32:
                raise TypeError(f"qmatmul: out must be a float32 array, got {getattr(out, 'dtype', type(out).__name__)}")
            if out.shape != lead + (self.shape[0],):
                raise ValueError(f"qmatmul: out must have shape {lead + (self.shape[0],)}, got {out.shape}")
            result = out.reshape(shape2)
            if not backend.namespace(out).may_share_memory(result, out):
                raise ValueError("qmatmul: out cannot be viewed as a (rows, outputs) matrix without a copy")
        if bias is not None:
            bias = bias._data if isinstance(bias, Tensor) else bias
        x2 = x.reshape(shape2[0], self.shape[1])
        n, k = self.shape
        if self.codebook:
            result = qmatmul_kernels.qmatmul_int4cb(x2, self.data, self.scales, n, k, bias, result,
                                                    reference=reference)
        elif self.bits == 8 and self.group_size is not None:
            result = qmatmul_kernels.qmatmul_int8g(x2, self.data, self.scales, n, k, self.group_size, bias, result,
                                                   reference=reference)
        elif self.bits == 8:
            result = qmatmul_kernels.qmatmul_int8(x2, self.data, self.scales, self.colsum, n, k, bias, result,
                                                  reference=reference)
        else:
            result = qmatmul_kernels.qmatmul_int4(x2, self.data, self.scales, n, k, self.group_size, bias, result,
                                                  reference=reference)
        return out if out is not None else result.reshape(lead + (n,))

    def __repr__(self) -> str:
        g = _format_args(self.bits, self.group_size, self.codebook)
        return f"QuantizedWeight(bits={self.bits}, shape={self.shape}{g}, nbytes={self.nbytes})"


def _format_args(bits, group_size, codebook) -> str:
    """The format's arguments beyond ``bits`` as a repr shows them."""
    if codebook:
        return ", codebook=True"
    return f", group_size={group_size}" if group_size is not None else ""


def quantize_weight(w, bits: int = 8, group_size: int | None = None, codebook: bool = False) -> QuantizedWeight:
    """Quantize a float (N, K) weight (a Linear's ``weight``: outputs x inputs) and pack it, on
    Ember's native packer: int8 with one scale per channel (max|w| / 127), or with ``group_size``
    one e6m10 scale per channel and group, the one near max|w| / 127 of least rounding error;
    int4 with one per channel and group (``group_size``, 32 by default), the clipping level
    (max|w| / 7, shrunk by up to 25%) whose rounding error is smallest; with ``codebook=True``
    (bits=4), per 16 inputs the signed scale of least squared error, then the scales rounded to
    6 bits under one float per 256 inputs. float64 weights are rounded to float32 first (what the
    kernels multiply)."""
    group_size = _check_bits_group(bits, group_size, codebook)
    w = w.detach()._host() if isinstance(w, Tensor) else np.asarray(w)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"quantize_weight: w must be a 2-D (N, K) array, got shape {w.shape}")
    if w.dtype.kind != "f":
        raise TypeError(f"quantize_weight: w must be floating point, got {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("quantize_weight: w holds NaN or infinite values")
    n, k = w.shape
    if k > 65536:
        raise ValueError(f"quantize_weight: K={k} is more than the 65536 inputs the kernels support")
    w = np.ascontiguousarray(w, dtype=np.float32)
    if codebook:
        sizes = packed_sizes(n, k, 4, codebook=True)
        data, scales = np.empty(sizes["data"][1], np.uint8), np.empty(sizes["scales"][1], np.uint8)
        qmatmul_kernels.quantize_pack_cb(w, data, scales)
        return QuantizedWeight(4, (n, k), data, scales, codebook=True, check=False)
    sizes = packed_sizes(n, k, bits, group_size)
    data, scales = (np.empty(sizes[name][1], sizes[name][0]) for name in ("data", "scales"))
    colsum = np.empty(sizes["colsum"][1], np.int32) if "colsum" in sizes else None
    if bits == 8 and group_size is not None:
        qmatmul_kernels.quantize_pack_int8g(w, group_size, data, scales)
    else:
        qmatmul_kernels.quantize_pack(w, bits, group_size or 0, data, scales, colsum)
    # Ember packed and checked these itself: the values within bounds, colsum their sums.
    return QuantizedWeight(bits, (n, k), data, scales, colsum, group_size, check=False)
