"""fp32 GEMM: the reference against NumPy, every ISA's fast path against both, bad input.

Two kinds of data catch two kinds of bugs. Small random integers make every product and
partial sum exact in float32, so any indexing, packing or edge-tile error shows up as an
exact mismatch. Gaussian data checks rounding behaviour against a float64 product with a
tolerance that grows with K.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from concurrency import run_threads
from hypothesis import given, settings
from hypothesis import strategies as st

import ember
from ember import kernels

U32 = 2.0**-24  # float32 unit roundoff

# M x K x N. Edge tiles for every micro-kernel (4x8, 6x16, 8x48), sizes around them,
# single rows/columns, and sizes that split unevenly over K, N and M blocks.
SMALL_SHAPES = [
    (1, 1, 1), (1, 1, 7), (2, 3, 4), (5, 1, 3), (7, 13, 17), (8, 8, 8), (9, 16, 47), (12, 32, 48),
    (13, 31, 49), (16, 64, 97), (17, 5, 33), (31, 130, 95), (33, 1, 65), (100, 70, 90),
    (129, 257, 130), (3, 400, 1), (50, 777, 3), (8, 1000, 1001), (9, 385, 481),
    (40, 27, 32), (100, 9, 20), (37, 50, 17), (1000, 3, 31),
]
# The shapes the library is tuned for: a large odd cube, the im2col of a 3->32 channel
# 3x3 convolution, a dense layer, and the matrix-vector and small-batch products.
LARGE_SHAPES = [(1000, 999, 1001), (65536, 27, 32), (64, 7200, 128), (1, 4096, 4096), (8, 4096, 4096)]


def shape_id(shape):
    return "x".join(map(str, shape))


def ints(rng, shape):
    return rng.integers(-4, 5, size=shape).astype(np.float32)


def gauss(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def operands(rng, m, k, n, trans_a, trans_b, make):
    """Stored arrays a, b and the operands op(a), op(b) they stand for."""
    a = make(rng, (k, m) if trans_a else (m, k))
    b = make(rng, (n, k) if trans_b else (k, n))
    return a, b, (a.T if trans_a else a), (b.T if trans_b else b)


def expected(a_op, b_op, alpha=1.0, beta=0.0, c0=None, bias=None, relu=False):
    r = alpha * (a_op.astype(np.float64) @ b_op.astype(np.float64))
    if beta != 0.0:
        r += beta * c0.astype(np.float64)
    if bias is not None:
        r += bias.astype(np.float64)
    return np.maximum(r, 0.0) if relu else r


def tolerance(a_op, b_op, alpha=1.0, beta=0.0, c0=None, bias=None):
    """Elementwise bound on float32 rounding: (K + 4) u (|alpha| |A||B| + |beta C| + |bias|)."""
    k = a_op.shape[1]
    scale = abs(alpha) * (np.abs(a_op).astype(np.float64) @ np.abs(b_op).astype(np.float64))
    if beta != 0.0:
        scale += abs(beta) * np.abs(c0.astype(np.float64))
    if bias is not None:
        scale += np.abs(bias.astype(np.float64))
    return (k + 4) * U32 * scale + 1e-30


def assert_within(got, want, tol):
    assert got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - tol, -np.inf)), err.shape)
        pytest.fail(f"{bad.sum()} elements out of tolerance; worst at {i}: got {got[i]}, want {want[i]}, "
                    f"tolerance {tol[i]}")


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=shape_id)
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["nn", "tn", "nt", "tt"])
def test_ref_matches_numpy(rng, shape, trans):
    m, k, n = shape
    a, b, a_op, b_op = operands(rng, m, k, n, *trans, gauss)
    c0, bias = gauss(rng, (m, n)), gauss(rng, (n,))
    out = c0.copy()
    got = kernels.gemm.gemm_ref(a, b, trans_a=trans[0], trans_b=trans[1], out=out, alpha=0.5, beta=-2.0, bias=bias,
                       relu=True)
    assert got is out
    want = expected(a_op, b_op, 0.5, -2.0, c0, bias, relu=True)
    # Double accumulation, one rounding to float32 at the end.
    np.testing.assert_allclose(got, want, rtol=U32, atol=1e-37)


# --------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=shape_id)
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["nn", "tn", "nt", "tt"])
def test_gemm_exact_on_integers(isa, rng, shape, trans):
    m, k, n = shape
    a, b, a_op, b_op = operands(rng, m, k, n, *trans, ints)
    got = kernels.gemm.gemm(a, b, trans_a=trans[0], trans_b=trans[1])
    np.testing.assert_array_equal(got, expected(a_op, b_op))


@pytest.mark.parametrize("shape", SMALL_SHAPES + LARGE_SHAPES, ids=shape_id)
def test_gemm_gaussian_against_numpy_and_ref(isa, rng, shape):
    m, k, n = shape
    a, b, a_op, b_op = operands(rng, m, k, n, False, False, gauss)
    got = kernels.gemm.gemm(a, b)
    want = expected(a_op, b_op)
    assert_within(got, want, tolerance(a_op, b_op))
    if m * k * n <= 7e7:  # the reference's plain loops are slow beyond this
        ref = kernels.gemm.gemm_ref(a, b)
        assert_within(got, ref.astype(np.float64), tolerance(a_op, b_op) + U32 * np.abs(ref))


@pytest.mark.parametrize("shape", [(1000, 999, 1001), (8, 4096, 4096)], ids=shape_id)
def test_gemm_large_transposed(isa, rng, shape):
    m, k, n = shape
    a, b, a_op, b_op = operands(rng, m, k, n, True, True, ints)
    np.testing.assert_array_equal(kernels.gemm.gemm(a, b, trans_a=True, trans_b=True), expected(a_op, b_op))


@pytest.mark.parametrize("shape", [(1, 64, 50), (7, 33, 100), (40, 100, 70), (300, 200, 100)], ids=shape_id)
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.5, 1.0), (-1.5, -0.25), (2.0, 3.0)])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_gemm_epilogue(isa, rng, shape, alpha, beta, with_bias, relu):
    m, k, n = shape
    a, b = gauss(rng, (m, k)), gauss(rng, (k, n))
    c0 = gauss(rng, (m, n))
    bias = gauss(rng, (n,)) if with_bias else None
    out = c0.copy()
    got = kernels.gemm.gemm(a, b, out=out, alpha=alpha, beta=beta, bias=bias, relu=relu)
    assert got is out
    want = expected(a, b, alpha, beta, c0, bias, relu)
    assert_within(got, want, tolerance(a, b, alpha, beta, c0, bias))
    if relu:
        assert (got >= 0).all()


# How op(a), op(b) reach each of the driver's paths (gemm_cpu.cpp): M <= 8 streams B past an
# accumulator (row-major B) or takes dot products (a transposed B); M <= 8 with B of no unit
# stride and any larger M go through the packed, K-blocked path.
BETA_PATHS = {
    "small-m": (5, False, False, lambda b: b),
    "small-m-dot": (5, False, True, lambda b: b),
    "small-m-packed": (5, False, False, lambda b: np.repeat(b, 2, axis=1)[:, ::2]),
    "packed": (50, False, False, lambda b: b),
    "packed-transposed": (50, True, True, lambda b: b),
}


@pytest.mark.parametrize("k", [257, 385, 1000])  # two, two and three or four K blocks
@pytest.mark.parametrize("beta", [0.5, -0.25, 2.0])
@pytest.mark.parametrize("path", list(BETA_PATHS))
def test_beta_applies_once_whatever_the_k_blocking(isa, rng, path, k, beta):
    # Small integers and power-of-two alpha/beta: every partial sum is exact in float32, so
    # beta C must be added exactly once, however K is split, and the result is bit-exact.
    m, trans_a, trans_b, view = BETA_PATHS[path]
    n = 40
    a, b, a_op, b_op = operands(rng, m, k, n, trans_a, trans_b, ints)
    b = view(b)
    c0 = ints(rng, (m, n))
    bias = ints(rng, (n,))
    for alpha, with_bias in ((1.0, False), (-0.5, True)):
        out = c0.copy()
        got = kernels.gemm.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, alpha=alpha, beta=beta,
                       bias=bias if with_bias else None)
        want = expected(a_op, b_op, alpha, beta, c0, bias if with_bias else None)
        np.testing.assert_array_equal(got, want, err_msg=f"alpha={alpha} bias={with_bias}")


def strided_views(rng):
    """(name, op(a) view, op(b) view) with awkward but valid strides, integer-valued."""
    big_a, big_b = ints(rng, (90, 130)), ints(rng, (140, 110))
    yield "slices", big_a[3:40:2, 5:105:3], big_b[1:101:3, 7:100:2]
    yield "negative", big_a[::-1, ::-2][:37, :50], big_b[::-2, ::-1][:50, :45]
    yield "fortran", np.asfortranarray(big_a[:37, :50]), np.asfortranarray(big_b[:50, :45])
    yield "transposed views", big_b[:50, :37].T, big_a[:45, :50].T
    yield "broadcast rows", np.broadcast_to(ints(rng, (1, 50)), (37, 50)), big_b[:50, :45]
    yield "broadcast columns", big_a[:37, :50], np.broadcast_to(ints(rng, (50, 1)), (50, 45))
    yield "row vector b", big_a[:37, :1], big_b[:1, :45]
    yield "small M view", big_a[::-9, 3:83], big_b[30:110, ::-3]


@pytest.mark.parametrize("trans_a", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("m,k", [(300, 257), (1000, 64), (17, 4096)])
def test_matrix_vector_as_a_column(isa, rng, m, k, trans_a):
    """A @ x with x a column (N = 1) runs as x^T @ A^T, streaming A once: the same result,
    epilogue included (the one bias value added to every row)."""
    a, b, a_op, b_op = operands(rng, m, k, 1, trans_a, False, gauss)
    c0, bias = gauss(rng, (m, 1)), gauss(rng, (1,))
    out = c0.copy()
    kernels.gemm.gemm(a, b, trans_a=trans_a, out=out, alpha=1.5, beta=-0.5, bias=bias, relu=True)
    assert_within(out, expected(a_op, b_op, 1.5, -0.5, c0, bias, relu=True),
                  tolerance(a_op, b_op, 1.5, -0.5, c0, bias))
    strided = np.empty((m, 3), np.float32)[:, :1]  # a column that is not contiguous: the packed path
    kernels.gemm.gemm(a, b, trans_a=trans_a, out=strided)
    assert_within(strided, expected(a_op, b_op), tolerance(a_op, b_op))


def test_gemm_reads_any_strides_in_place(isa, rng):
    for name, a_op, b_op in strided_views(rng):
        got = kernels.gemm.gemm(a_op, b_op)
        np.testing.assert_array_equal(got, expected(a_op, b_op), err_msg=name)
        # Same operands given through the transpose flags.
        got_t = kernels.gemm.gemm(a_op.T, b_op.T, trans_a=True, trans_b=True)
        np.testing.assert_array_equal(got_t, expected(a_op, b_op), err_msg=name)


def test_gemm_out_is_a_padded_slice(isa, rng):
    m, k, n = 30, 70, 50
    a, b = ints(rng, (m, k)), ints(rng, (k, n))
    canvas = np.full((m + 4, n + 9), np.nan, dtype=np.float32)
    out = canvas[2 : 2 + m, 3 : 3 + n]
    assert kernels.gemm.gemm(a, b, out=out) is out
    np.testing.assert_array_equal(out, expected(a, b))
    outside = np.ones(canvas.shape, bool)
    outside[2 : 2 + m, 3 : 3 + n] = False
    assert np.isnan(canvas[outside]).all(), "gemm wrote outside out"


@pytest.mark.parametrize("shape", [(1, 50, 40), (8, 50, 40), (20, 50, 40), (100, 500, 300)], ids=shape_id)
def test_beta_zero_never_reads_out(isa, rng, shape):
    m, k, n = shape
    a, b = ints(rng, (m, k)), ints(rng, (k, n))
    out = np.full((m, n), np.nan, dtype=np.float32)
    kernels.gemm.gemm(a, b, out=out, beta=0.0)
    np.testing.assert_array_equal(out, expected(a, b))


def test_k_zero_gives_beta_c(isa, rng):
    a, b = np.empty((5, 0), np.float32), np.empty((0, 7), np.float32)
    np.testing.assert_array_equal(kernels.gemm.gemm(a, b), np.zeros((5, 7), np.float32))
    c0, bias = gauss(rng, (5, 7)), gauss(rng, (7,))
    out = c0.copy()
    kernels.gemm.gemm(a, b, out=out, beta=2.0, bias=bias, relu=True)
    np.testing.assert_allclose(out, np.maximum(2.0 * c0 + bias, 0), rtol=U32)
    for alpha in (np.nan, np.inf):  # no product term at all: not alpha * (an empty sum)
        for reference in (False, True):
            out = c0.copy()
            kernels.gemm.gemm(a, b, out=out, alpha=alpha, beta=2.0, reference=reference)
            np.testing.assert_allclose(out, 2.0 * c0, rtol=U32)


@pytest.mark.parametrize("m, n", [(0, 5), (5, 0), (0, 0)])
def test_empty_results(isa, rng, m, n):
    a, b = gauss(rng, (m, 6)), gauss(rng, (6, n))
    got = kernels.gemm.gemm(a, b)
    assert got.shape == (m, n) and got.dtype == np.float32


def test_alpha_zero_does_not_read_a_or_b(isa, rng):
    a = np.full((9, 11), np.nan, np.float32)
    b = np.full((11, 13), np.inf, np.float32)
    c0 = gauss(rng, (9, 13))
    out = c0.copy()
    kernels.gemm.gemm(a, b, out=out, alpha=0.0, beta=0.5)
    np.testing.assert_allclose(out, 0.5 * c0, rtol=U32)


@pytest.mark.parametrize("shape", [(1, 20, 30), (20, 20, 30), (64, 200, 100)], ids=shape_id)
def test_nan_propagates_through_product_and_relu(isa, rng, shape):
    m, k, n = shape
    a, b = gauss(rng, (m, k)), gauss(rng, (k, n))
    a[m // 2, k // 3] = np.nan
    got = kernels.gemm.gemm(a, b, relu=True)
    assert np.isnan(got[m // 2]).all()
    others = np.delete(got, m // 2, axis=0)
    assert not np.isnan(others).any()


@pytest.mark.parametrize("shape", [(3, 100, 70), (8, 3000, 2000), (200, 300, 500), (1000, 200, 40)], ids=shape_id)
def test_results_do_not_depend_on_thread_count(isa, rng, num_threads, shape):
    m, k, n = shape
    a, b = gauss(rng, (m, k)), gauss(rng, (k, n))
    results = []
    for t in (1, 2, 3, 5):
        ember.set_num_threads(t)
        results.append(kernels.gemm.gemm(a, b))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_concurrent_python_threads_get_the_same_results(isa, rng):
    shapes = [(300, 200, 250), (4, 2000, 1000), (1000, 27, 32), (65, 129, 257)]
    inputs = [(gauss(rng, (m, k)), gauss(rng, (k, n))) for m, k, n in shapes] * 2
    serial = [kernels.gemm.gemm(a, b) for a, b in inputs]
    results = [[None] * len(inputs) for _ in range(4)]

    def work(t):
        for _ in range(3):
            for i, (a, b) in enumerate(inputs):
                results[t][i] = kernels.gemm.gemm(a, b)

    run_threads(work, 4)
    for per_thread in results:
        for got, want in zip(per_thread, serial):
            np.testing.assert_array_equal(got, want)


@settings(deadline=None, max_examples=60)
@given(
    m=st.integers(1, 70), k=st.integers(0, 90), n=st.integers(1, 110),
    trans_a=st.booleans(), trans_b=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_gemm_property_matches_numpy(m, k, n, trans_a, trans_b, seed):
    rng = np.random.default_rng(seed)
    a, b, a_op, b_op = operands(rng, m, k, n, trans_a, trans_b, ints)
    previous = ember.get_isa()
    for isa in ember.available_isas():
        ember.set_isa(isa)
        try:
            got = kernels.gemm.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        finally:
            ember.set_isa(previous)
        np.testing.assert_array_equal(got, expected(a_op, b_op), err_msg=isa)


# --------------------------------------------------------------------------- bad input

F32 = np.ones((4, 5), np.float32)
G32 = np.ones((5, 3), np.float32)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (F32.astype(np.float64), G32, "a must have dtype float32, got float64"),
        (F32, G32.astype(np.int32), "b must have dtype float32, got int32"),
        (F32.astype(object), G32, "a must have dtype float32, got object"),
        (F32.tolist(), G32, "a must be a numpy.ndarray of float32, got list"),
        (F32, 3.0, "b must be a numpy.ndarray of float32, got float"),
    ],
)
def test_wrong_types_raise_type_error(a, b, match):
    with pytest.raises(TypeError, match=match):
        kernels.gemm.gemm(a, b)


@pytest.mark.parametrize(
    "a, b, kwargs, match",
    [
        (np.ones(5, np.float32), G32, {}, r"a must be 2-D, got shape \(5,\)"),
        (F32, np.ones((2, 5, 3), np.float32), {}, r"b must be 2-D, got shape \(2, 5, 3\)"),
        (F32, np.ones((4, 3), np.float32), {}, r"inner dimensions differ: op\(a\) is 4x5 .* op\(b\) is 4x3"),
        (F32, G32, {"trans_a": True}, r"inner dimensions differ: op\(a\) is 5x4"),
        (F32, G32, {"beta": 1.0}, "beta is 1 but out is None"),
        (F32, G32, {"out": np.empty((4, 4), np.float32)}, r"out must have shape \(4, 3\).*got \(4, 4\)"),
        (F32, G32, {"out": np.empty((4, 3), np.float32, order="F")}, "out must have unit column stride"),
        (F32, G32, {"out": np.empty((4, 6), np.float32)[:, ::2]}, "out must have unit column stride"),
        (F32, G32, {"bias": np.ones(4, np.float32)}, r"bias must have shape \(3,\)"),
        (F32, G32, {"bias": np.ones((1, 3), np.float32)}, "bias must be 1-D"),
    ],
)
def test_bad_shapes_and_layouts_raise_value_error(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernels.gemm.gemm(a, b, **kwargs)


def test_wrong_out_and_bias_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        kernels.gemm.gemm(F32, G32, out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="bias must have dtype float32, got float64"):
        kernels.gemm.gemm(F32, G32, bias=np.ones(3))


def test_read_only_out_is_refused():
    out = np.empty((4, 3), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        kernels.gemm.gemm(F32, G32, out=out)


def test_out_aliasing_an_input_is_refused():
    buf = np.ones((6, 6), np.float32)
    with pytest.raises(ValueError, match="out must not share memory with a"):
        kernels.gemm.gemm(buf[:, :3], buf[:3, :], out=buf[:, :6])
    sq = np.ones((5, 5), np.float32)
    with pytest.raises(ValueError, match="out must not share memory with b"):
        kernels.gemm.gemm(np.ones((5, 5), np.float32), sq, out=sq)
    bias = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="out must not share memory with bias"):
        kernels.gemm.gemm(np.ones((1, 2), np.float32), np.ones((2, 8), np.float32), out=bias.reshape(1, 8), bias=bias)


def test_overflowing_result_size_is_refused():
    a = np.broadcast_to(np.float32(1), (2**40, 1))
    b = np.broadcast_to(np.float32(1), (1, 2**40))
    with pytest.raises(ValueError, match="too big"):
        kernels.gemm.gemm(a, b)


def test_misaligned_arrays_are_refused():
    raw = np.zeros(4 * 20 + 1, np.uint8)
    a = np.frombuffer(raw.data, dtype=np.float32, count=20, offset=1).reshape(4, 5)
    with pytest.raises(ValueError, match="a must be aligned"):
        kernels.gemm.gemm(a, G32)


# --------------------------------------------------------------------------- memory safety

GUARD_SCRIPT = r"""
import ctypes, mmap, sys
import numpy as np
import ember
from ember import _C, kernels, quant

libc = ctypes.CDLL(None, use_errno=True)
PAGE = mmap.PAGESIZE
keep = []
rng = np.random.default_rng(int(sys.argv[2]))


def guarded(shape, dtype=np.float32, values=None, order="C"):
    # An array whose last byte is the last byte before a PROT_NONE page: any read or write
    # past its end is a segmentation fault. Filled with `values`, else small integers.
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    pages = -(-count * dtype.itemsize // PAGE) + 1
    buf = mmap.mmap(-1, pages * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if libc.mprotect(ctypes.c_void_p(base + (pages - 1) * PAGE), ctypes.c_size_t(PAGE), 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    arr = np.frombuffer(buf, dtype, count=count, offset=(pages - 1) * PAGE - count * dtype.itemsize)
    arr = arr.reshape(shape[::-1]).T if order == "F" else arr.reshape(shape)
    arr[...] = rng.integers(-4, 5, size=shape) if values is None else values
    keep.append(buf)
    return arr


def section(name):
    print("section", name, flush=True)  # the last one printed names the section of a crash


def close(got, want, what, rtol=1e-5, atol=1e-4):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.allclose(got, want, rtol=rtol, atol=atol), (what, float(np.max(np.abs(got - want))))


ember.set_isa(sys.argv[1])

section("gemm")
shapes = [(1, 7, 5), (3, 9, 47), (8, 13, 33), (9, 16, 47), (13, 5, 49), (17, 33, 95), (40, 100, 70), (5, 300, 1),
          (29, 27, 32), (25, 7, 16), (5, 385, 40), (50, 385, 40)]
for m, k, n in shapes:
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = guarded((k, m) if trans_a else (m, k))
            b = guarded((n, k) if trans_b else (k, n))
            bias = guarded((n,))
            out = guarded((m, n))
            c0 = out.astype(np.float64)
            kernels.gemm.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, beta=1.0, bias=bias)
            a_op = a.T if trans_a else a
            b_op = b.T if trans_b else b
            assert np.array_equal(out, a_op.astype(np.float64) @ b_op + c0 + bias), (m, k, n)

section("pooling")
for shape, ceil_mode in [((2, 3, 31, 29), True), ((1, 2, 6, 70), False), ((1, 1, 3, 3), True)]:
    x = guarded(shape)
    y, idx = kernels.pool2d.max_pool2d_fwd(x, 2, ceil_mode=ceil_mode, return_indices=True)
    want, want_idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2, ceil_mode=ceil_mode)
    assert np.array_equal(y, want) and np.array_equal(idx, want_idx), shape
    dy = guarded(y.shape)
    close(kernels.pool2d.max_pool2d_bwd(dy, idx, shape), kernels.pool2d.max_pool2d_bwd_ref(dy, want_idx, shape), "max bwd")
    close(kernels.pool2d.avg_pool2d_bwd(dy, shape, 2, ceil_mode=ceil_mode),
          kernels.pool2d.avg_pool2d_bwd_ref(dy, shape, 2, ceil_mode=ceil_mode), "avg bwd")
    close(kernels.pool2d.avg_pool2d_fwd(x, 2, ceil_mode=ceil_mode), kernels.pool2d.avg_pool2d_fwd_ref(x, 2, ceil_mode=ceil_mode), "avg")

# One layer per convolution algorithm: Winograd, per-tap GEMMs (1x1, strided, dilated), the
# direct few-channel and depthwise kernels, and grouped implicit GEMM.
CONVS = [
    ((2, 16, 9, 7), (16, 16, 3, 3), dict(padding=1)),
    ((1, 17, 8, 9), (8, 17, 1, 1), dict()),
    ((1, 16, 9, 10), (5, 16, 3, 3), dict(stride=2, padding=1)),
    ((1, 16, 11, 10), (8, 16, 3, 3), dict(dilation=2, padding=(1, 2))),
    ((2, 3, 9, 7), (4, 3, 3, 3), dict(padding=1)),
    ((1, 5, 8, 9), (5, 1, 3, 3), dict(padding=1, groups=5)),
    ((1, 4, 8, 9), (6, 2, 3, 2), dict(stride=2, padding=(2, 1), groups=2)),
]
for xs, ws, kwargs in CONVS:
    section(f"conv2d forward {xs} {ws} {kwargs}")
    x, w, bias = guarded(xs), guarded(ws), guarded((ws[0],))
    y = kernels.conv2d.conv2d_fwd(x, w, bias, **kwargs)
    close(y, kernels.conv2d.conv2d_fwd_ref(x, w, bias, **kwargs), "conv2d")
    section(f"conv2d backward {xs} {ws} {kwargs}")
    dy = guarded(y.shape)
    close(kernels.conv2d.conv2d_bwd_data(dy, w, xs, **kwargs), kernels.conv2d.conv2d_bwd_data_ref(dy, w, xs, **kwargs),
          "conv2d_backward_data")
    dw, db = kernels.conv2d.conv2d_bwd_weight(x, dy, ws, bias=True, **kwargs)
    want_dw, want_db = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, ws, bias=True, **kwargs)
    close(dw, want_dw, "conv2d_backward_weight")
    close(db, want_db, "conv2d_backward_weight bias")

for b, v in [(1, 1), (3, 7), (5, 17), (2, 33), (3, 1001)]:
    section(f"softmax cross-entropy {b}x{v}")
    z = guarded((b, v))
    weight = guarded((v,), values=rng.uniform(0.5, 1.5, v))
    hard = guarded((b,), np.int64, values=rng.integers(0, v, b))
    soft = rng.random((b, v))
    soft = guarded((b, v), values=soft / soft.sum(axis=1, keepdims=True))
    for t in (hard, soft):
        for kw in ({}, {"weight": weight, "label_smoothing": 0.1}, {"reduction": "none"}):
            loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True, **kw)
            want, want_lse = kernels.cross_entropy.cross_entropy_fwd_ref(z, t, return_lse=True, **kw)
            close(np.asarray(loss), np.asarray(want), "xent loss")
            lse_g = guarded((b,), np.float64, values=lse)
            g = guarded((b,), values=rng.uniform(0.5, 1.5, b)) if kw.get("reduction") == "none" else 0.5
            out = guarded((b, v))
            got = kernels.cross_entropy.cross_entropy_bwd(z, t, lse_g, g, out=out, **kw)
            assert got is out
            close(got, kernels.cross_entropy.cross_entropy_bwd_ref(z, t, want_lse, g, **kw), "xent backward")

for b, d, v, rows in [(1, 3, 5, 1), (7, 9, 33, 2), (12, 17, 101, 5)]:
    section(f"linear_cross_entropy {b}x{d}x{v}")
    h = guarded((b, d))
    w = guarded((v, d))
    bias = guarded((v,))
    t = guarded((b,), np.int64, values=rng.integers(0, v, b))
    loss, dh, dw, db = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias, chunk_bytes=4 * v * rows, label_smoothing=0.05)
    z = kernels.gemm.gemm_ref(h, w, trans_b=True, bias=bias)
    _, lse = kernels.cross_entropy.cross_entropy_fwd_ref(z, t, return_lse=True, label_smoothing=0.05)
    dz = kernels.cross_entropy.cross_entropy_bwd_ref(z, t, lse, label_smoothing=0.05).astype(np.float64)
    close(np.asarray(loss), np.asarray(kernels.cross_entropy.cross_entropy_fwd_ref(z, t, label_smoothing=0.05)), "loss")
    close(dh, dz @ w, "d_hidden")
    close(dw, dz.T @ h, "d_weight")
    close(db, dz.sum(axis=0), "d_bias")

for bits, group in [(8, None), (4, 32)]:
    for m, k, n in [(1, 33, 17), (3, 65, 40), (9, 127, 17), (2, 7, 3)]:
        section(f"qmatmul int{bits} {m}x{k}x{n}")
        qw = quant.quantize_weight(rng.standard_normal((n, k)).astype(np.float32), bits, group)
        qg = quant.QuantizedWeight(bits, (n, k), guarded(qw.data.shape, qw.data.dtype, qw.data),
                                   guarded(qw.scales.shape, np.float32, qw.scales),
                                   None if qw.colsum is None else guarded(qw.colsum.shape, np.int32, qw.colsum),
                                   group)
        x = guarded((m, k), values=rng.standard_normal((m, k)))
        bias = guarded((n,), values=rng.standard_normal(n))
        out = guarded((m, n))
        assert np.shares_memory(qg.matmul(x, bias, out=out), out)
        assert np.array_equal(out, qw.matmul(x, bias, reference=True)), (bits, m, k, n)

for n in [1, 7, 15, 16, 17, 33, 100, 1001]:
    section(f"adam_step {n}")
    for amsgrad in (False, True):
        for decoupled, maximize in ((False, False), (True, True)):
            arrays = [guarded((n,), values=rng.standard_normal(n)), guarded((n,), values=rng.standard_normal(n)),
                      guarded((n,), values=rng.standard_normal(n) * 0.1), guarded((n,), values=rng.random(n)),
                      guarded((n,), values=rng.random(n)) if amsgrad else None]
            want = [None if a is None else a.copy() for a in arrays]
            hyper = ([3], 1e-2, 0.9, 0.999, 1e-8, 0.01, decoupled, maximize)
            p, g, m, v, vmax = ([a] if a is not None else None for a in arrays)
            _C.adam_step(p, g, m, v, vmax, *hyper)
            p, g, m, v, vmax = ([a] if a is not None else None for a in want)
            _C.adam_step_ref(p, g, m, v, vmax, *hyper)
            for got, ref in zip(arrays, want):
                if got is not None:
                    close(got, ref, "adam_step", atol=1e-6)
    section(f"sgd_step {n}")
    for momentum, nesterov, first in ((0.0, False, False), (0.9, False, True), (0.9, True, False)):
        arrays = [guarded((n,), values=rng.standard_normal(n)), guarded((n,), values=rng.standard_normal(n)),
                  guarded((n,), values=rng.standard_normal(n)) if momentum else None]
        want = [None if a is None else a.copy() for a in arrays]
        hyper = (0.1, momentum, 0.0 if nesterov else 0.2, 0.01, nesterov, False, first)
        _C.sgd_step(*([a] if a is not None else None for a in arrays), *hyper)
        _C.sgd_step_ref(*([a] if a is not None else None for a in want), *hyper)
        for got, ref in zip(arrays, want):
            if got is not None:
                close(got, ref, "sgd_step", atol=1e-6)
print("ok")
"""


def test_kernels_never_touch_memory_past_their_arrays(isa, rng):
    # Every operand ends at an inaccessible page; run in a child so an overrun is reported as
    # a failed test (naming the section it happened in) rather than a crashed suite.
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    seed = str(int(rng.integers(2**31)))
    result = subprocess.run([sys.executable, "-c", GUARD_SCRIPT, isa, seed], capture_output=True, text=True,
                            env=env, timeout=300)
    sections = [line for line in result.stdout.splitlines() if line.startswith("section ")]
    assert result.returncode == 0, (f"child exited with {result.returncode} in {sections[-1:]} (seed {seed}): "
                                    f"{result.stderr[-2000:]}")
    assert result.stdout.strip().endswith("ok")
