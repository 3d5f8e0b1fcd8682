"""Inputs a hostile or careless caller passes to the kernels: views the kernels must not walk
as if contiguous, degenerate shapes, geometry at the edge of int64, labels that wrap. Each
must give the reference's answer or a clear exception naming the argument, never a crash,
never a read or write outside the arrays, never minutes of work on a clipped window."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import kernels
from ember.quant import quantize_weight


@pytest.fixture
def rng():
    return np.random.default_rng()


# ----------------------------------------------------------------------------- quantized matmul

# int8 per channel, int8 in groups, int4
FORMS = pytest.mark.parametrize("form", [{"bits": 8}, {"bits": 8, "group_size": 32}, {"bits": 4}],
                                ids=["int8", "int8-g32", "int4"])


@FORMS
def test_qmatmul_single_strided_or_reversed_row(isa, rng, form):
    w = rng.standard_normal((40, 64)).astype(np.float32)
    qw = quantize_weight(w, **form)
    v = rng.standard_normal(128).astype(np.float32)
    for x in (v[::2], v[:64][::-1], v.reshape(2, 64).T.copy().T[0], v.reshape(64, 2)[:, 0].reshape(1, 64)):
        expected = qw.matmul(np.ascontiguousarray(x), reference=True)
        np.testing.assert_array_equal(qw.matmul(x), expected)
        np.testing.assert_array_equal(qw.matmul(x, reference=True), expected)


@FORMS
def test_qmatmul_reversed_out_writes_only_inside(isa, rng, form):
    qw = quantize_weight(rng.standard_normal((40, 64)).astype(np.float32), **form)
    x = rng.standard_normal((1, 64)).astype(np.float32)
    canary = np.full(100, -7.0, np.float32)
    out = canary[:40][::-1].reshape(1, 40)  # reversed: the kernels write rows forwards, so it is refused
    for reference in (False, True):
        with pytest.raises(ValueError, match="out must have unit column stride"):
            qw.matmul(x, out=out, reference=reference)
    assert (canary == -7.0).all()
    out = canary[10:90].reshape(2, 40)[:1]  # a forward view is written in place, nothing around it
    assert qw.matmul(x, out=out) is out
    np.testing.assert_array_equal(out, qw.matmul(x, reference=True))
    assert (canary[:10] == -7.0).all() and (canary[50:] == -7.0).all()


def test_qmatmul_binding_refuses_strided_single_row(rng):
    qw = quantize_weight(rng.standard_normal((16, 32)).astype(np.float32), bits=8)
    x = rng.standard_normal((1, 64)).astype(np.float32)[:, ::2]
    out = np.empty((1, 16), np.float32)
    for fn in (ember._C.qmatmul_int8, ember._C.qmatmul_int8_ref):
        with pytest.raises(ValueError, match="input must have unit column stride"):
            fn(x, qw.data, qw.scales, qw.colsum, 16, 32, None, out)
    y = np.full((1, 32), -7.0, np.float32)[:, ::-1][:, :16]
    with pytest.raises(ValueError, match="out must have unit column stride"):
        ember._C.qmatmul_int8(np.ascontiguousarray(x), qw.data, qw.scales, qw.colsum, 16, 32, None, y)


@FORMS
def test_qmatmul_nan_input_is_refused(isa, rng, form):
    qw = quantize_weight(rng.standard_normal((16, 33)).astype(np.float32), **form)
    x = rng.standard_normal((3, 33)).astype(np.float32)
    x[1, 7] = np.nan
    out = np.full((3, 16), 5.0, np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        qw.matmul(x, out=out)
    x[1, 7] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        qw.matmul(x)


# ----------------------------------------------------------------------------- convolution


def _conv_all(x, w, b, **kw):
    y = kernels.conv2d.conv2d_fwd(x, w, b, **kw)
    y_ref = kernels.conv2d.conv2d_fwd_ref(x, w, b, **kw)
    return y, y_ref


@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_zero_input_channels_is_bias_only(isa, rng, relu):
    x = np.zeros((2, 0, 9, 9), np.float32)
    w = np.zeros((6, 0, 3, 3), np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    y, y_ref = _conv_all(x, w, b, relu=relu)
    expected = np.broadcast_to((np.maximum(b, 0) if relu else b)[None, :, None, None], (2, 6, 7, 7))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(y_ref, expected)
    y0, _ = _conv_all(x, w, None)
    assert (y0 == 0).all() and y0.shape == (2, 6, 7, 7)
    dy = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    dw, db = kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True)
    dw_ref, db_ref = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True)
    assert dw.shape == (6, 0, 3, 3)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db_ref, db, rtol=1e-5, atol=1e-5)
    assert kernels.conv2d.conv2d_bwd_data(dy, w, x.shape).shape == x.shape


@pytest.mark.parametrize("value", [2**61, 2**62, 2**63 - 1])
@pytest.mark.parametrize("arg", ["dilation", "padding", "both", "stride"])
def test_conv2d_geometry_beyond_int64_is_refused(rng, value, arg):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    kw = {"dilation": {"dilation": value}, "padding": {"padding": value}, "both": {"dilation": value, "padding": value},
          "stride": {"stride": value}}[arg]
    if kw == {"stride": 2**61}:  # representable: one output position
        y, y_ref = _conv_all(x, w, None, **kw)
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        assert y.shape == (1, 3, 1, 1)
        return
    for fn in (kernels.conv2d.conv2d_fwd, kernels.conv2d.conv2d_fwd_ref):
        with pytest.raises(ValueError, match="stride|padding|dilation"):
            fn(x, w, **kw)


def test_conv2d_binding_bounds_geometry(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = np.empty((1, 3, 5, 5), np.float32)
    for fn in (ember._C.conv2d_fwd, ember._C.conv2d_fwd_ref):
        with pytest.raises(ValueError, match="too large"):
            fn(x, w, None, y, 1, 1, 2**61, 2**61, 2**61, 2**61, 1, False)
        with pytest.raises(ValueError, match="padding"):
            fn(x, w, None, y, 1, 1, 2**62, 1, 1, 1, 1, False)


@pytest.mark.parametrize("arg", ["dilation", "padding"])
def test_conv2d_large_but_representable_geometry_matches_reference(isa, rng, arg):
    # A large dilation with a padding that puts one tap on the image: only that tap reads
    # data, and the fast path must neither allocate a padded plane of 2^40 rows nor differ.
    big = 2**40
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = {"dilation": big, "padding": big} if arg == "dilation" else {"dilation": (big, 1), "padding": (big, 1)}
    y, y_ref = _conv_all(x, w, b, **kw)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(kernels.conv2d.conv2d_bwd_data(dy, w, x.shape, **kw),
                               kernels.conv2d.conv2d_bwd_data_ref(dy, w, x.shape, **kw), rtol=1e-4, atol=1e-4)
    for a, r in zip(kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True, **kw),
                    kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kw)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- pooling


_F32_EPS = float(np.finfo(np.float32).eps)


def test_max_pool2d_cost_follows_the_clipped_window(isa, rng):
    # Before the windows were clipped in closed form this ran for minutes (2^64 taps per window).
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    y, idx = kernels.pool2d.max_pool2d_fwd(x, 2**32, padding=2**31, return_indices=True)
    y_ref, idx_ref = kernels.pool2d.max_pool2d_fwd_ref(x, 2**32, padding=2**31)
    np.testing.assert_array_equal(y, x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(y_ref, y)
    np.testing.assert_array_equal(idx_ref, idx)
    a = kernels.pool2d.avg_pool2d_fwd(x, 2**32, padding=2**31)
    # A float32 sum of 30 values: its rounding error scales with the sum of their magnitudes
    # (a sum that cancels can lose all its relative precision).
    scale = np.abs(x).sum(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(a, kernels.pool2d.avg_pool2d_fwd_ref(x, 2**32, padding=2**31), rtol=0,
                               atol=float((_F32_EPS * 30 * scale / 2.0**64).max()))
    np.testing.assert_allclose(a * (2.0**64), x.sum(axis=(2, 3), keepdims=True), rtol=0,
                               atol=float((_F32_EPS * 30 * scale).max()))


def test_pool_geometry_beyond_int64_is_refused(rng):
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="kernel_size|too large"):
        kernels.pool2d.max_pool2d_fwd(x, 2**62)
    with pytest.raises(ValueError, match="dilation"):
        kernels.pool2d.max_pool2d_fwd(x, 3, padding=1, dilation=2**61)
    y = np.empty((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="too large"):
        ember._C.max_pool2d_fwd(x, y, None, 2**62, 2**62, 1, 1, 0, 0, 1, 1)


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0)])
def test_adaptive_avg_pool2d_empty_plane_is_refused(shape):
    x = np.empty(shape, np.float32)
    for fn in (kernels.pool2d.adaptive_avg_pool2d_fwd, kernels.pool2d.adaptive_avg_pool2d_fwd_ref):
        with pytest.raises(ValueError, match="non-empty"):
            fn(x, 1)
    with pytest.raises(ValueError, match="non-empty"):
        ember.nn.functional.adaptive_avg_pool2d(ember.Tensor(x), 1)
    # The bindings refuse it too, forward and backward, whatever the caller.
    pooled = np.zeros((2, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match="input has shape .*: adaptive pooling needs a non-empty H x W plane"):
        ember._C.adaptive_avg_pool2d_fwd(x, pooled)
    with pytest.raises(ValueError, match="out has shape .*: adaptive pooling needs a non-empty H x W plane"):
        ember._C.adaptive_avg_pool2d_bwd(pooled, x)


# ----------------------------------------------------------------------------- cross-entropy


def test_uint64_labels_past_int64_do_not_wrap_into_ignore_index(rng):
    z = rng.standard_normal((3, 5)).astype(np.float32)
    t = np.array([1, 2**64 - 100, 0], np.uint64)  # wraps to -100 (ignore_index) as int64
    with pytest.raises(ValueError, match=r"target\[1\]"):
        kernels.cross_entropy.cross_entropy_fwd(z, t)
    with pytest.raises(ValueError, match=r"target\[1\]"):
        ember.nn.functional.cross_entropy(ember.Tensor(z), t)
    with pytest.raises(ValueError, match=r"target\[1\]"):
        kernels.cross_entropy.linear_cross_entropy(z, rng.standard_normal((4, 5)).astype(np.float32), t)


@pytest.mark.parametrize("value", [2**63, 2**70, -(2**63) - 1])
def test_out_of_range_python_ints_are_named(rng, value):
    z = rng.standard_normal((3, 5)).astype(np.float32)
    with pytest.raises((ValueError, OverflowError), match="ignore_index"):
        kernels.cross_entropy.cross_entropy_fwd(z, np.array([0, 1, 2]), ignore_index=value)
    with pytest.raises((ValueError, OverflowError), match="n"):
        ember.set_num_threads(value)
    with pytest.raises((ValueError, OverflowError), match="nbytes"):
        ember.set_host_cache_limit(value)


@FORMS
def test_qmatmul_out_over_the_packed_weight_is_refused(form):
    """An out that overlaps the packed weight would overwrite it while the kernel reads it."""
    qw = quantize_weight(np.linspace(-1, 1, 3 * 40, dtype=np.float32).reshape(3, 40), **form)
    x = np.ones((2, 40), np.float32)
    arrays = {"data": qw.data, "scales": qw.scales} | ({"colsum": qw.colsum} if qw.colsum is not None else {})
    kernel = {8: "qmatmul_int8", 4: "qmatmul_int4"}[qw.bits] + ("g" if qw.bits == 8 and qw.group_size else "")
    for name, packed in arrays.items():
        out = packed.view(np.uint8)[: 2 * 3 * 4].view(np.float32).reshape(2, 3)
        args = (x, qw.data, qw.scales, qw.colsum, 3, 40) if qw.colsum is not None else (x, qw.data, qw.scales, 3, 40,
                                                                                         qw.group_size)
        before = packed.copy()
        with pytest.raises(ValueError, match=f"out must not share memory with {name}"):
            getattr(ember._C, kernel)(*args, None, out)
        np.testing.assert_array_equal(packed, before)
