"""The int4 codebook format's packed arrays, read in NumPy (see ``csrc/ops/qmatmul/qmatmul.h``):
per 16 output channels and 256 inputs, ``scales`` holds 256 bytes — 16 float32 super-block
scales, then 16 six-bit signed sub-block scales per channel (one per 16 inputs) — and ``data``
holds 4-bit indices into a fixed 16-level codebook, in the int4 layout. 4.5 bits per weight."""

from __future__ import annotations

import numpy as np

from .kernels import qmatmul as qmatmul_kernels

BLOCK, SUPER, SUB = 16, 256, 16
SCALE_BYTES = 256  # per 16-channel block and super-block
CODEBOOK = np.array(qmatmul_kernels.int4_codebook(), dtype=np.float32)


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def packed_sizes(n: int, k: int) -> dict:
    """K padded to 16 for the indices; a last, partial super-block has whole scales."""
    np16 = _round_up(n, BLOCK)
    return {"data": (np.uint8, np16 * _round_up(k, SUB) // 2),
            "scales": (np.uint8, np16 // BLOCK * (_round_up(k, SUPER) // SUPER) * SCALE_BYTES)}


def _blocks(scales, n: int, k: int) -> np.ndarray:
    """The scale bytes as (blocks of 16 channels, super-blocks, 256)."""
    return scales.reshape(_round_up(n, BLOCK) // BLOCK, _round_up(k, SUPER) // SUPER, SCALE_BYTES)


def super_scales(scales, n: int, k: int) -> np.ndarray:
    """The float32 scales, (blocks, super-blocks, 16 channels)."""
    return np.ascontiguousarray(_blocks(scales, n, k)[:, :, :64]).view(np.float32)


def sub_scales(scales, n: int, k: int) -> np.ndarray:
    """The six-bit scales in [-32, 31], (blocks, super-blocks, 16 channels, 16 sub-blocks)."""
    rows = _blocks(scales, n, k)[:, :, 64:].astype(np.int32).reshape(*_blocks(scales, n, k).shape[:2], 4, 3, BLOCK)
    a, b, c = rows[:, :, :, 0], rows[:, :, :, 1], rows[:, :, :, 2]  # (blocks, supers, quads, channels)
    u = np.stack([a & 63, b & 63, c & 63, a >> 6 | (b >> 6) << 2 | (c >> 6) << 4], axis=3)  # (..., quad, 4, ch)
    return (u - 32).reshape(*u.shape[:2], SUPER // SUB, BLOCK).transpose(0, 1, 3, 2)


def scale_problems(scales, n: int, k: int, name: str = "weight_scales") -> list:
    """What is wrong with a codebook weight's scales: float scales that are not finite or are
    negative (zero is an all-zero super-block)."""
    s = super_scales(scales, n, k)
    good = np.isfinite(s) & (s >= 0)
    if bool(good.all()):
        return []
    return [f"{name}: the float scales must be finite and >= 0, found {s[~good][:3].tolist()}"]


def dequantize(data, scales, n: int, k: int) -> np.ndarray:
    """The float32 (N, K) weight the packed arrays stand for."""
    np16, kp = _round_up(n, BLOCK), _round_up(k, SUB)
    b = data.reshape(np16 // BLOCK, kp // 8, BLOCK, 4).transpose(0, 2, 1, 3)
    w = np.empty((np16, kp), np.float32)
    halves = w.reshape(np16 // BLOCK, BLOCK, kp // 8, 2, 4)  # k = 8 o + 4 h + j
    halves[..., 0, :] = CODEBOOK[b & 15]
    halves[..., 1, :] = CODEBOOK[b >> 4]
    scale = super_scales(scales, n, k)[..., None] * sub_scales(scales, n, k)  # (blocks, supers, ch, subs)
    scale = scale.transpose(0, 2, 1, 3).reshape(np16, -1)[:, :kp // SUB].astype(np.float32)
    subs = w.reshape(np16, kp // SUB, SUB)
    subs *= scale[:, :, None]
    return np.ascontiguousarray(w[:n, :k])
