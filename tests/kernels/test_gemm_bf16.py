"""The bf16 GEMM against its reference on every ISA level the host has (AMX tiles, vdpbf16ps, and
the fp32 GEMM on widened inputs below them), and the bf16 <-> float32 conversions."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import ember
from ember.kernels import gemm

BF16 = np.dtype(ml_dtypes.bfloat16)


def bf16(rng, shape):
    return rng.standard_normal(shape).astype(np.float32).astype(BF16)


def exact(a, b):
    """op(a) @ op(b) of bf16 inputs in float64: every product exact, the sum nearly so."""
    return a.astype(np.float64) @ b.astype(np.float64)


def tolerance(a, b):
    """float32 summation of K exact products: a few ulps of the sum of |products|."""
    return 8 * np.finfo(np.float32).eps * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))) + 1e-30


SHAPES = [(1, 1, 1), (1, 300, 1), (7, 5, 3), (32, 32, 32), (33, 65, 47), (64, 31, 96), (100, 1, 70),
          (17, 257, 33), (130, 96, 200)]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_bf16_gemm_matches_the_exact_product(isa, rng, m, k, n):
    a, b = bf16(rng, (m, k)), bf16(rng, (k, n))
    out = np.full((m, n), np.nan, np.float32)  # beta == 0: never read
    gemm.gemm(a, b, out=out)
    assert np.all(np.abs(out - exact(a, b)) <= tolerance(a, b))
    ref = gemm.gemm_ref(a, b)
    assert np.all(np.abs(ref - exact(a, b)) <= tolerance(a, b))


@pytest.mark.parametrize("ld", [1056, 1059])  # rows 64-byte aligned, and not
def test_bf16_large_output_with_bias_and_relu(isa, rng, ld):
    """An output of a million floats or more and beta == 0: written without being read (streaming
    stores where the rows allow), every element, the columns past N untouched."""
    m, k, n = 1000, 40, 1056
    a, b = bf16(rng, (m, k)), bf16(rng, (k, n))
    bias = rng.standard_normal(n).astype(np.float32)
    base = np.full((m, ld), np.nan, np.float32)
    out = base[:, :n]
    gemm.gemm(a, b, out=out, bias=bias, relu=True, alpha=2.0)
    want = np.maximum(2.0 * exact(a, b) + bias, 0)
    assert np.all(np.abs(out - want) <= 2 * tolerance(a, b) + 1e-6 * np.abs(want))
    assert np.isnan(base[:, n:]).all()


@pytest.mark.parametrize("lda", [320, 1040, 2048])  # rows 640 bytes, 2080 bytes and 4 KB apart
def test_bf16_row_major_a_read_in_place(isa, rng, lda):
    """A row-major op(A) with K a multiple of 32 is read where it lies, all but a last partial strip
    of rows, whatever its row stride (AMX packs rows 4 KB apart instead), over several chunks of
    K and with C accumulated."""
    m, k, n = 70, 320, 96
    a = bf16(rng, (m, lda))[:, :k]
    b = bf16(rng, (k, n))
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    out = c0.copy()
    gemm.gemm(a, b, out=out, beta=0.5)
    want = exact(a, b) + 0.5 * c0
    assert np.all(np.abs(out - want) <= tolerance(a, b) + 1e-6 * np.abs(want))


@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False), (True, True)])
def test_bf16_transposes_and_strided_views(isa, rng, trans_a, trans_b):
    m, k, n = 45, 70, 38
    a_base = bf16(rng, (k * 2, m * 3) if trans_a else (m * 2, k * 3))
    b_base = bf16(rng, (n * 2, k * 3) if trans_b else (k * 2, n * 3))
    a = a_base[::2, ::3]
    b = b_base[::-2, ::3]  # negative strides too
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = c0.copy()
    gemm.gemm(a, b, out=out, alpha=0.5, beta=-1.5, trans_a=trans_a, trans_b=trans_b, bias=bias, relu=True)
    ref = c0.copy()
    gemm.gemm_ref(a, b, out=ref, alpha=0.5, beta=-1.5, trans_a=trans_a, trans_b=trans_b, bias=bias, relu=True)
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    want = np.maximum(0.5 * exact(opa, opb) - 1.5 * c0 + bias, 0)
    assert np.all(np.abs(out - want) <= 0.5 * tolerance(opa, opb) + 1e-5 * np.abs(want))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("trans_a", [False, True])
def test_bf16_operands_shared_out_among_threads(isa, rng, trans_a):
    """Operands large enough to be converted by several threads (row ranges, strided rows
    gathered per thread where a level widens them): the same bits on 1, 2 and 3 threads."""
    m, k, n = 600, 300, 200
    a = bf16(rng, (k, m)).T if trans_a else bf16(rng, (m, k))
    b = bf16(rng, (k, n))
    outs = []
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        outs.append(gemm.gemm(a, b))
    assert np.all(np.abs(outs[0] - exact(a, b)) <= tolerance(a, b))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("m, k", [(45, 70), (64, 96), (16, 32), (33, 31)])
def test_bf16_transposed_a_read_whole_tiles_at_a_time(isa, rng, m, k):
    """op(A) the transpose of a C-contiguous matrix (a Linear's weight gradient, dYᵀ X): whole 16 x
    32 tiles are packed by transposing blocks, the edges one value at a time -- both exact."""
    a = bf16(rng, (k, m))
    b = bf16(rng, (k, 24))
    out = np.zeros((m, 24), np.float32)
    gemm.gemm(a, b, out=out, trans_a=True)
    want = exact(a.T, b)
    assert np.all(np.abs(out - want) <= 0.5 * tolerance(a.T, b) + 1e-5 * np.abs(want))


def test_bf16_special_cases(isa, rng):
    a, b = bf16(rng, (5, 0)), bf16(rng, (0, 4))
    c = np.full((5, 4), 2.0, np.float32)
    gemm.gemm(a, b, out=c, beta=0.5, bias=np.ones(4, np.float32))
    np.testing.assert_array_equal(c, np.full((5, 4), 2.0))  # K == 0: beta * C + bias
    a, b = bf16(rng, (3, 6)), bf16(rng, (6, 4))
    c = np.full((3, 4), np.nan, np.float32)
    gemm.gemm(a, b, out=c, alpha=0.0)
    np.testing.assert_array_equal(c, np.zeros((3, 4)))  # alpha == 0, beta == 0: C is not read
    assert gemm.gemm(bf16(rng, (0, 3)), bf16(rng, (3, 2))).shape == (0, 2)
    # NaN and infinity propagate; ReLU keeps NaN
    a = np.array([[np.nan, 1], [np.inf, 1], [-1, 1]], BF16)
    b = np.array([[1], [1]], BF16)
    out = gemm.gemm(a, b, relu=True)
    assert np.isnan(out[0, 0]) and out[1, 0] == np.inf and out[2, 0] == 0


def test_bf16_errors_name_the_argument(rng):
    a, b = bf16(rng, (4, 5)), bf16(rng, (5, 3))
    with pytest.raises(TypeError, match="a and b must both be float32 or both bf16"):
        gemm.gemm(a, b.astype(np.float32))
    with pytest.raises(TypeError, match="out must have dtype float32"):
        gemm.gemm(a, b, out=np.empty((4, 3), BF16))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        gemm.gemm(a, bf16(rng, (4, 3)))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 3\)"):
        gemm.gemm(a, b, out=np.empty((3, 4), np.float32))


def test_amx_and_vdpbf16ps_paths_are_the_ones_used(rng):
    """On a CPU with AMX the best ISA is 'amx' (the OS granted the tile state), and its result
    is the reference's within float32 rounding on a size with full and partial tiles."""
    if "amx" not in ember.available_isas():
        pytest.skip("this CPU has no AMX (or the OS did not grant the tile state): the AMX path is untested here")
    assert ember.get_isa() == "amx" and ember._C.cpu_features()["amx"]
    a, b = bf16(rng, (300, 520)), bf16(rng, (520, 270))
    out = gemm.gemm(a, b)
    assert np.all(np.abs(out - exact(a, b)) <= tolerance(a, b))


# --------------------------------------------------------------------------- conversions

def test_to_bf16_rounds_to_nearest_even_as_ml_dtypes_does(isa, rng):
    with np.errstate(over="ignore"):  # magnitudes past float32's range become infinite, on purpose
        scaled = (rng.standard_normal(10000) * 10.0 ** rng.integers(-40, 39, 10000)).astype(np.float32)
    x = np.concatenate([
        scaled,
        np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-40, -1e-45, 1.00390625, 1.01171875], np.float32),
        rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bit pattern
    ]).astype(np.float32)
    got = gemm.convert_bf16(x)
    assert got.dtype == BF16
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(got[finite].view(np.uint16), x[finite].astype(BF16).view(np.uint16))
    nan = np.isnan(x)
    assert np.isnan(got[nan].astype(np.float32)).all()  # a NaN stays a NaN (never rounds to infinity)
    assert (np.signbit(got[nan].astype(np.float32)) == np.signbit(x[nan])).all()


def test_from_bf16_is_exact_and_round_trips(isa):
    every = np.arange(2**16, dtype=np.uint16).view(BF16)
    wide = gemm.convert_bf16(every)
    assert wide.dtype == np.float32
    np.testing.assert_array_equal(wide.view(np.uint32) >> 16, np.arange(2**16))  # the bits, shifted
    finite = ~np.isnan(wide)
    np.testing.assert_array_equal(gemm.convert_bf16(wide)[finite].view(np.uint16), every[finite].view(np.uint16))


def test_conversion_errors(rng):
    with pytest.raises(TypeError, match="x must have dtype float32"):
        gemm.convert_bf16(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="out must have dtype bfloat16"):
        gemm.convert_bf16(np.zeros(3, np.float32), out=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="out must have x's shape"):
        gemm.convert_bf16(np.zeros(3, np.float32), out=np.zeros(4, BF16))
    x = np.zeros((4, 6), np.float32)[:, ::2]  # not contiguous: read through a copy
    assert gemm.convert_bf16(x).shape == (4, 3)
