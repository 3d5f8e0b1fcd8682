"""Pooling references: against NumPy loops written from the definitions (and PyTorch when
installed), ties and NaN, backward through indices and the adjoint identity, bad input."""

import math

import numpy as np
import pytest

import ember
from ember import kernels

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None


def out_size(size, k, pad, stride, dil, ceil_mode):
    num = size + 2 * pad - dil * (k - 1) - 1
    out = (math.ceil(num / stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def numpy_max_pool(x, k, s, p, d, ceil_mode):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, p, s, d, ceil_mode), out_size(w, k, p, s, d, ceil_mode)
    y = np.empty((n, c, oh, ow), np.float32)
    idx = np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            cells = [(i * s - p + a * d, j * s - p + b * d) for a in range(k) for b in range(k)]
            cells = [(r, q) for r, q in cells if 0 <= r < h and 0 <= q < w]
            for nn in range(n):
                for cc in range(c):
                    best, best_idx = -np.inf, cells[0][0] * w + cells[0][1]
                    for r, q in cells:
                        v = x[nn, cc, r, q]
                        if v > best or np.isnan(v):
                            best, best_idx = v, r * w + q
                    y[nn, cc, i, j], idx[nn, cc, i, j] = best, best_idx
    return y, idx


def numpy_avg_pool(x, k, s, p, ceil_mode, count_include_pad):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, p, s, 1, ceil_mode), out_size(w, k, p, s, 1, ceil_mode)
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s - p, j * s - p
            h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
            padded = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            total = x[:, :, h0:h1, w0:w1].astype(np.float64).sum(axis=(2, 3))
            y[:, :, i, j] = total / (padded if count_include_pad else (h1 - h0) * (w1 - w0))
    return y


# (shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 8, 8), 2, 2, 0, 1, False),
    ((1, 2, 9, 7), 3, 2, 1, 1, False),
    ((1, 2, 9, 7), 3, 2, 1, 1, True),
    ((2, 1, 10, 11), 3, 1, 1, 2, False),
    ((1, 3, 7, 7), 2, 3, 1, 1, True),
    ((1, 1, 5, 5), 5, 1, 2, 1, False),
]
AVG_CASES = [
    ((2, 3, 8, 8), 2, 2, 0, False, True),
    ((1, 2, 9, 7), 3, 2, 1, False, True),
    ((1, 2, 9, 7), 3, 2, 1, False, False),
    ((1, 2, 9, 7), 3, 2, 1, True, True),
    ((1, 2, 10, 6), 4, 3, 2, True, False),
]


@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool2d_ref(rng, case):
    shape, k, s, p, d, ceil_mode = case
    x = rng.standard_normal(shape, dtype=np.float32)
    y, idx = kernels.pool2d.max_pool2d_fwd_ref(x, k, s, p, d, ceil_mode)
    want, want_idx = numpy_max_pool(x, k, s, p, d, ceil_mode)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = kernels.pool2d.max_pool2d_bwd_ref(dy, idx, x.shape)
    expect = np.zeros((shape[0] * shape[1], shape[2] * shape[3]))
    for plane in range(expect.shape[0]):
        np.add.at(expect[plane], idx.reshape(expect.shape[0], -1)[plane], dy.reshape(expect.shape[0], -1)[plane])
    np.testing.assert_allclose(dx, expect.reshape(shape), rtol=1e-6, atol=1e-6)


def test_max_pool2d_ref_ties_and_nan():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2, 2)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])  # first maximum wins a tie
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 1, 1] = 5.0
    y, idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4  # NaN wins; the last NaN in the window
    assert not np.isnan(y[0, 0, 1:, :]).any()
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    y, idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2, 1, 1)
    assert np.isneginf(y).all() and idx[0, 0, 0, 0] == 0  # all -inf: the first valid position


@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool2d_ref(rng, case):
    shape, k, s, p, ceil_mode, count_include_pad = case
    x = rng.standard_normal(shape, dtype=np.float32)
    y = kernels.pool2d.avg_pool2d_fwd_ref(x, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(y, numpy_avg_pool(x, k, s, p, ceil_mode, count_include_pad), rtol=1e-6, atol=1e-7)
    # avg pooling is linear: its backward is the adjoint, <dy, pool(x)> = <backward(dy), x>.
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = kernels.pool2d.avg_pool2d_bwd_ref(dy, x.shape, k, s, p, ceil_mode, count_include_pad)
    lhs = np.vdot(dy.astype(np.float64), y.astype(np.float64))
    assert abs(lhs - np.vdot(dx.astype(np.float64), x.astype(np.float64))) <= 1e-5 * (abs(lhs) + 1)


@pytest.mark.parametrize("out", [1, 2, (3, 2), (5, 7)])
def test_adaptive_avg_pool2d_ref(rng, out):
    x = rng.standard_normal((2, 3, 7, 9), dtype=np.float32)
    y = kernels.pool2d.adaptive_avg_pool2d_fwd_ref(x, out)
    oh, ow = (out, out) if isinstance(out, int) else out
    want = np.empty((2, 3, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * 7) // oh, -(-((i + 1) * 7) // oh)
            w0, w1 = (j * 9) // ow, -(-((j + 1) * 9) // ow)
            want[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = kernels.pool2d.adaptive_avg_pool2d_bwd_ref(dy, x.shape)
    lhs = np.vdot(dy.astype(np.float64), y.astype(np.float64))
    assert abs(lhs - np.vdot(dx.astype(np.float64), x.astype(np.float64))) <= 1e-5 * (abs(lhs) + 1)
    if out == 1:
        np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-6)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_pooling_refs_match_torch(rng):
    x = rng.standard_normal((2, 3, 11, 10), dtype=np.float32)
    tx = torch.from_numpy(x)
    for k, s, p, d, ceil_mode in [(2, 2, 0, 1, False), (3, 2, 1, 2, True), (3, 1, 1, 1, False)]:
        y, idx = kernels.pool2d.max_pool2d_fwd_ref(x, k, s, p, d, ceil_mode)
        ty, tidx = F.max_pool2d(tx, k, s, p, d, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
    for k, s, p, ceil_mode, cip in [(2, 2, 0, False, True), (3, 2, 1, True, False), (4, 3, 2, True, True)]:
        y = kernels.pool2d.avg_pool2d_fwd_ref(x, k, s, p, ceil_mode, cip)
        np.testing.assert_allclose(y, F.avg_pool2d(tx, k, s, p, ceil_mode, cip).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kernels.pool2d.adaptive_avg_pool2d_fwd_ref(x, (3, 4)), F.adaptive_avg_pool2d(tx, (3, 4)).numpy(),
                               rtol=1e-5, atol=1e-6)


X = np.ones((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize(
    "fn, args, exc, match",
    [
        (kernels.pool2d.max_pool2d_fwd_ref, (X.astype(np.float16), 2), TypeError,
         "input must have dtype float32 or float64"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X[0], 2), ValueError, "input must be 4-D"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X, 0), ValueError, "kernel_size must be >= 1"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X, 2, 0), ValueError, "stride must be >= 1"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X, 2, 2, 2), ValueError, "padding .* must be at most half"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X, 2, 2, -1), ValueError, "padding must be >= 0"),
        (kernels.pool2d.max_pool2d_fwd_ref, (X, 7), ValueError, "output size .* is too small"),
        (kernels.pool2d.avg_pool2d_fwd_ref, (X, (2, 9)), ValueError, "output size .* is too small"),
        (kernels.pool2d.adaptive_avg_pool2d_fwd_ref, (X, 0), ValueError, "output_size must be >= 1"),
    ],
)
def test_pooling_bad_input(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


def test_max_pool2d_backward_rejects_bad_indices():
    dy = np.ones((1, 2, 3, 3), np.float32)
    idx = np.zeros((1, 2, 3, 3), np.int64)
    idx[0, 1, 2, 2] = 36
    with pytest.raises(ValueError, match=r"indices\[17\] = 36 is outside the input plane"):
        kernels.pool2d.max_pool2d_bwd_ref(dy, idx, X.shape)
    idx[0, 0, 0, 1] = -1  # the first bad index is named, a negative one included
    for fn in (kernels.pool2d.max_pool2d_bwd, kernels.pool2d.max_pool2d_bwd_ref):
        with pytest.raises(ValueError, match=r"indices\[1\] = -1 is outside the input plane"):
            fn(dy, idx, X.shape)
    with pytest.raises(TypeError, match="indices must have dtype int64"):
        kernels.pool2d.max_pool2d_bwd_ref(dy, idx.astype(np.int32), X.shape)


def test_pooling_empty_batch():
    y, idx = kernels.pool2d.max_pool2d_fwd_ref(np.ones((0, 2, 6, 6), np.float32), 2)
    assert y.shape == idx.shape == (0, 2, 3, 3)
    assert kernels.pool2d.avg_pool2d_fwd_ref(np.ones((0, 2, 6, 6), np.float32), 3).shape == (0, 2, 2, 2)


# --------------------------------------------------------------------------- fast paths

FAST_MAX_CASES = MAX_CASES + [
    ((3, 5, 31, 29), 2, 2, 0, 1, False),  # the dedicated 2x2 stride-2 row kernel, odd sizes
    ((2, 4, 30, 30), 2, 2, 0, 1, True),
    ((2, 3, 6, 70), 2, 2, 0, 1, False),  # 35 outputs a row: full and partial vector steps
    ((1, 2, 4, 64), 2, 2, 0, 1, False),
    ((2, 3, 31, 29), 2, 2, 0, 1, True),  # ceil_mode on odd sizes: the last windows are partial
    ((1, 2, 3, 3), 2, 2, 0, 1, True),
    ((2, 3, 17, 16), 3, 3, 1, 1, True),
]


@pytest.mark.parametrize("case", FAST_MAX_CASES, ids=str)
def test_max_pool2d_matches_ref(isa, rng, num_threads, case):
    shape, k, s, p, d, ceil_mode = case
    x = rng.standard_normal(shape, dtype=np.float32)
    x[0, 0, 1, :] = x[0, 0, 0, :]  # ties across rows
    x[0, -1, 0, 0] = np.nan
    want, want_idx = kernels.pool2d.max_pool2d_fwd_ref(x, k, s, p, d, ceil_mode)
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    want_dx = kernels.pool2d.max_pool2d_bwd_ref(dy, want_idx, x.shape)
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        y, idx = kernels.pool2d.max_pool2d_fwd(x, k, s, p, d, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(kernels.pool2d.max_pool2d_fwd(x, k, s, p, d, ceil_mode), want)
        np.testing.assert_allclose(kernels.pool2d.max_pool2d_bwd(dy, idx, x.shape), want_dx, rtol=1e-6, atol=1e-6)


def test_max_pool2d_ties_and_nans_follow_the_rules(isa, rng):
    # Values drawn from a few, so windows hold ties (the first maximum wins; -0.0 ties 0.0), NaNs
    # (a NaN wins; of several, the last) and infinities: the 2x2 row kernels' every vector lane and
    # their scalar tails (20 outputs a row) against the reference, values and indices.
    values = np.array([-np.inf, -1.0, -0.0, 0.0, 1.0, np.inf, np.nan], np.float32)
    x = values[rng.integers(0, len(values), (2, 3, 8, 40))]
    want, want_idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2)
    y, idx = kernels.pool2d.max_pool2d_fwd(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(want))


@pytest.mark.parametrize("case", AVG_CASES + [((2, 8, 30, 30), 2, 2, 0, False, True)], ids=str)
def test_avg_pool2d_matches_ref(isa, rng, case):
    shape, k, s, p, ceil_mode, count_include_pad = case
    x = rng.standard_normal(shape, dtype=np.float32)
    want = kernels.pool2d.avg_pool2d_fwd_ref(x, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(kernels.pool2d.avg_pool2d_fwd(x, k, s, p, ceil_mode, count_include_pad), want, rtol=1e-5,
                               atol=1e-6)
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    np.testing.assert_allclose(kernels.pool2d.avg_pool2d_bwd(dy, x.shape, k, s, p, ceil_mode, count_include_pad),
                               kernels.pool2d.avg_pool2d_bwd_ref(dy, x.shape, k, s, p, ceil_mode, count_include_pad),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out", [1, (3, 2), (7, 9), (4, 5)])
def test_adaptive_avg_pool2d_matches_ref(isa, rng, out):
    x = rng.standard_normal((3, 4, 7, 9), dtype=np.float32)
    want = kernels.pool2d.adaptive_avg_pool2d_fwd_ref(x, out)
    np.testing.assert_allclose(kernels.pool2d.adaptive_avg_pool2d_fwd(x, out), want, rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    np.testing.assert_allclose(kernels.pool2d.adaptive_avg_pool2d_bwd(dy, x.shape),
                               kernels.pool2d.adaptive_avg_pool2d_bwd_ref(dy, x.shape), rtol=1e-5, atol=1e-6)


def test_fast_pooling_checks_like_the_reference():
    with pytest.raises(ValueError, match="output size .* is too small"):
        kernels.pool2d.max_pool2d_fwd(X, 7)
    with pytest.raises(TypeError, match="input must have dtype float32"):
        kernels.pool2d.avg_pool2d_fwd(X.astype(np.float16), 2)
    idx = np.full((1, 2, 3, 3), -1, np.int64)
    with pytest.raises(ValueError, match="is outside the input plane"):
        kernels.pool2d.max_pool2d_bwd(np.ones((1, 2, 3, 3), np.float32), idx, X.shape)


def test_pooling_bindings_check_what_they_are_given():
    from ember import _C

    x = np.ones((1, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="output plane 5x4 does not match input plane 8x8"):
        _C.max_pool2d_fwd(x, np.empty((1, 2, 5, 4), np.float32), None, 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="out must not share memory with input"):
        _C.avg_pool2d_fwd(x, x.reshape(-1)[:32].reshape(1, 2, 4, 4), 2, 2, 2, 2, 0, 0, True)
    dy = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="out must not share memory with grad_output"):
        _C.avg_pool2d_bwd(dy, dy.reshape(1, 2, 4, 4), 1, 1, 1, 1, 0, 0, True)
