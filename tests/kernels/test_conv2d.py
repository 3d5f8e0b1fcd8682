"""conv2d references: forward against NumPy (and PyTorch when installed), backward-data and
backward-weight through the adjoint identities, and the argument checks."""

import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember import kernels

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None


def numpy_conv2d(x, w, b, stride, pads, dilation, groups):
    """float64 convolution by shifted slices of the padded input: one einsum per kernel tap."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, pads, dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]
        wg = w[g * og : (g + 1) * og].astype(np.float64)
        for p in range(kh):
            for q in range(kw):
                patch = xg[:, :, p * dh : p * dh + sh * (oh - 1) + 1 : sh, q * dw : q * dw + sw * (ow - 1) + 1 : sw]
                y[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, p, q])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def explicit_pads(padding, k, dilation):
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        th, tw = dilation[0] * (k[0] - 1), dilation[1] * (k[1] - 1)
        return ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# (N, C, H, W), (O, KH, KW), stride, padding, dilation, groups
CASES = [
    ((1, 1, 5, 5), (1, 3, 3), 1, 0, 1, 1),
    ((2, 3, 9, 8), (4, 3, 3), 1, 1, 1, 1),
    ((2, 3, 11, 7), (5, 1, 1), 1, 0, 1, 1),
    ((1, 4, 13, 12), (6, 5, 5), 2, 2, 1, 2),
    ((2, 2, 15, 14), (3, 7, 7), 3, 3, 1, 1),
    ((1, 6, 10, 9), (6, 3, 3), 1, "same", 1, 6),  # depthwise
    ((1, 4, 9, 10), (8, 3, 3), 2, 1, 1, 4),  # depthwise, channel multiplier 2
    ((2, 3, 12, 11), (6, 3, 3), 1, 1, 1, 3),  # depthwise, multiplier 2, stride 1
    ((1, 5, 11, 13), (5, 3, 3), 1, 2, 2, 5),  # depthwise, dilated
    ((2, 4, 9, 7), (4, 3, 2), 1, (3, 2), (2, 1), 4),  # depthwise, padding wider than the kernel
    ((1, 3, 6, 6), (3, 1, 1), 1, 2, 1, 3),  # depthwise 1x1 with padding
    ((2, 2, 8, 9), (2, 1, 3), (1, 2), (0, 1), 1, 2),  # depthwise, column stride 2
    ((2, 3, 12, 11), (2, 3, 2), (2, 1), (1, 0), (2, 3), 1),
    ((1, 2, 8, 8), (2, 4, 2), 1, "same", (1, 2), 1),  # even kernel: asymmetric 'same'
    ((1, 3, 7, 9), (4, 2, 3), 2, "valid", 1, 1),
    ((64, 3, 8, 8), (4, 3, 3), 1, 1, 1, 1),  # batch 64
    # 2..15 input channels per group at unit stride (the direct few-channel kernels)
    ((2, 3, 9, 37), (6, 3, 3), 1, 1, 1, 1),
    ((1, 5, 7, 20), (9, 3, 3), 1, (1, 2), (1, 2), 1),
    ((2, 6, 10, 18), (8, 3, 3), 1, 1, 1, 2),
    # 3x3 at unit stride with 16+ channels per group each way (Winograd F(2x2, 3x3))
    ((2, 16, 9, 11), (16, 3, 3), 1, 1, 1, 1),
    ((1, 32, 6, 40), (32, 3, 3), 1, (0, 2), 1, 2),
    ((3, 16, 7, 5), (20, 3, 3), 1, "same", 1, 1),
    ((1, 24, 4, 4), (16, 3, 3), 1, 0, 1, 1),
    # 16+ input and 8+ output channels per group (one GEMM per tap over the padded input)
    ((2, 16, 9, 11), (12, 3, 3), 1, 1, 1, 1),
    ((1, 32, 7, 9), (20, 3, 5), 1, (2, 1), (1, 2), 2),
    ((3, 17, 10, 10), (9, 5, 5), 1, "same", 1, 1),
    ((1, 16, 6, 7), (9, 2, 2), 1, "same", 1, 1),
    ((2, 24, 5, 7), (16, 1, 1), 1, 0, 1, 1),
    ((2, 16, 9, 9), (10, 3, 3), 1, 0, 3, 1),
    ((1, 20, 8, 8), (12, 3, 3), 2, 1, 1, 1),  # strides: phase planes
    ((2, 16, 11, 13), (12, 3, 3), (2, 3), (1, 2), (2, 1), 1),
    ((1, 32, 9, 9), (32, 1, 1), 2, 0, 1, 2),
    ((1, 16, 12, 10), (10, 5, 5), 3, 2, 1, 1),
    # 16+ output and 8+ input channels per group (backward-data as a shifted-input forward;
    # also backward-weight in shifted form, up to 64 output channels per group)
    ((2, 12, 9, 10), (16, 3, 3), 1, 1, 1, 1),
    ((1, 18, 8, 9), (32, 3, 5), 1, (1, 4), (2, 1), 2),
    ((1, 16, 6, 6), (16, 1, 1), 1, 1, 1, 1),
    ((1, 16, 7, 8), (16, 2, 2), 1, "same", 1, 1),
]


def case_id(case):
    x, w, s, p, d, g = case
    return f"x{'x'.join(map(str, x))}-w{'x'.join(map(str, w))}-s{s}-p{p}-d{d}-g{g}".replace(" ", "")


def make_case(rng, case):
    (n, c, h, wd), (o, kh, kw), stride, padding, dilation, groups = case
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    w = rng.standard_normal((o, c // groups, kh, kw), dtype=np.float32)
    b = rng.standard_normal((o,), dtype=np.float32)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kwargs


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_ref_matches_numpy(rng, case):
    x, w, b, kw = make_case(rng, case)
    y = kernels.conv2d.conv2d_fwd_ref(x, w, b, **kw)
    d = pair(kw["dilation"])
    want = numpy_conv2d(x, w, b, pair(kw["stride"]), explicit_pads(kw["padding"], w.shape[2:], d), d, kw["groups"])
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-5)
    y_relu = kernels.conv2d.conv2d_fwd_ref(x, w, b, relu=True, **kw)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_ref_backward_is_the_adjoint(rng, case):
    # conv is linear in x and in w, so its derivatives are exactly the adjoint maps:
    # <dy, conv(x, w)> = <backward_data(dy), x> = <backward_weight(x, dy), w>.
    x, w, b, kw = make_case(rng, case)
    y = kernels.conv2d.conv2d_fwd_ref(x, w, None, **kw)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = kernels.conv2d.conv2d_bwd_data_ref(dy, w, x.shape, **kw)
    dw, db = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kw)
    lhs = np.vdot(dy.astype(np.float64), y.astype(np.float64))
    scale = np.vdot(np.abs(dy).astype(np.float64), np.abs(y).astype(np.float64)) + 1e-12
    assert abs(lhs - np.vdot(dx.astype(np.float64), x.astype(np.float64))) <= 1e-5 * scale
    assert abs(lhs - np.vdot(dw.astype(np.float64), w.astype(np.float64))) <= 1e-5 * scale
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6, atol=1e-5)
    _, db_none = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=False, **kw)
    assert db_none is None


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_ref_matches_torch(rng, case):
    x, w, b, kw = make_case(rng, case)
    tx = torch.from_numpy(x).double().requires_grad_()
    tw = torch.from_numpy(w).double().requires_grad_()
    tb = torch.from_numpy(b).double().requires_grad_()
    ty = F.conv2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(tuple(ty.shape), dtype=np.float32)
    ty.backward(torch.from_numpy(dy).double())
    np.testing.assert_allclose(kernels.conv2d.conv2d_fwd_ref(x, w, b, **kw), ty.detach().numpy(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(kernels.conv2d.conv2d_bwd_data_ref(dy, w, x.shape, **kw), tx.grad.numpy(), rtol=1e-6,
                               atol=1e-5)
    dw, db = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kw)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-6, atol=1e-4)


def test_conv2d_ref_propagates_nan_and_reads_views(rng):
    x = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    x[0, 1, 2, 2] = np.nan
    y = kernels.conv2d.conv2d_fwd_ref(x, w, relu=True)
    assert np.isnan(y[0, :, 0:3, 0:3]).all() and not np.isnan(y[0, :, 3:, 3:]).any()
    base = rng.standard_normal((6, 6, 2, 1), dtype=np.float32)
    view = base.transpose(3, 2, 0, 1)  # non-contiguous N C H W view: accepted, read correctly
    want = numpy_conv2d(view, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_allclose(kernels.conv2d.conv2d_fwd_ref(view, w), want, rtol=1e-6, atol=1e-5)


def test_conv2d_ref_empty_batch():
    y = kernels.conv2d.conv2d_fwd_ref(np.ones((0, 3, 5, 5), np.float32), np.ones((2, 3, 3, 3), np.float32))
    assert y.shape == (0, 2, 3, 3)


X = np.ones((1, 4, 6, 6), np.float32)
W = np.ones((2, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((X.astype(np.float64), W), {}, TypeError, "weight must have dtype float64 like the input"),
        ((X.astype(np.int32), W), {}, TypeError, "input must have dtype float32 or float64, got int32"),
        ((X, W.astype(np.int32)), {}, TypeError, "weight must have dtype float32"),
        ((X[0], W), {}, ValueError, r"input must be 4-D \(N, C, H, W\), got shape \(4, 6, 6\)"),
        ((X, np.ones((2, 3, 3, 3), np.float32)), {}, ValueError, "input has 4 channels"),
        ((X, np.ones((3, 2, 3, 3), np.float32)), {"groups": 2}, ValueError, "groups=2 must divide"),
        ((X, np.ones((2, 4, 7, 7), np.float32)), {}, ValueError, "larger than the padded input"),
        ((X, W), {"stride": 0}, ValueError, "stride must be >= 1"),
        ((X, W), {"padding": -1}, ValueError, "padding must be >= 0"),
        ((X, W), {"dilation": (1, 0)}, ValueError, "dilation must be >= 1"),
        ((X, W), {"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
        ((X, W), {"padding": "full"}, ValueError, "padding must be an int, a pair, 'same' or 'valid'"),
        ((X, W), {"stride": 1.5}, TypeError, "stride must be an int or a pair of ints"),
        ((X, W, np.ones(3, np.float32)), {}, ValueError, r"bias must have shape \(2,\)"),
        ((X, W), {"groups": 0}, ValueError, "groups must be a positive int"),
    ],
)
def test_conv2d_ref_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kernels.conv2d.conv2d_fwd_ref(*args, **kwargs)


# --------------------------------------------------------------------------- fast forward


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_matches_ref(isa, rng, num_threads, case):
    x, w, b, kw = make_case(rng, case)
    for bias, relu in [(None, False), (b, False), (b, True)]:
        want = kernels.conv2d.conv2d_fwd_ref(x, w, bias, relu=relu, **kw)
        k = w.shape[1] * w.shape[2] * w.shape[3]
        tol = (k + 4) * 2.0**-24 * (np.abs(want).max() + np.abs(b).max() + 1.0) * 4
        for threads in (1, 2, 3):
            ember.set_num_threads(threads)
            got = kernels.conv2d.conv2d_fwd(x, w, bias, relu=relu, **kw)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=tol)
        if relu:
            assert (got >= 0).all()


def test_conv2d_exact_on_integers(isa, rng):
    # Small integers make every product and sum exact: any patch or packing error shows.
    for case in CASES:
        x, w, b, kw = make_case(rng, case)
        x = np.round(x * 2).astype(np.float32)
        w = np.round(w * 2).astype(np.float32)
        b = np.round(b * 2).astype(np.float32)
        np.testing.assert_array_equal(kernels.conv2d.conv2d_fwd(x, w, b, **kw), kernels.conv2d.conv2d_fwd_ref(x, w, b, **kw), err_msg=case_id(case))


def test_conv2d_checks_like_the_reference():
    with pytest.raises(ValueError, match="larger than the padded input"):
        kernels.conv2d.conv2d_fwd(X, np.ones((2, 4, 7, 7), np.float32))
    with pytest.raises(TypeError, match="input must have dtype float32 or float64"):
        kernels.conv2d.conv2d_fwd(X.astype(np.float16), W)
    with pytest.raises(TypeError, match="weight must have dtype float64 like the input"):
        kernels.conv2d.conv2d_fwd(X.astype(np.float64), W)
    y = kernels.conv2d.conv2d_fwd(np.ones((0, 4, 6, 6), np.float32), W)
    assert y.shape == (0, 2, 4, 4)


# --------------------------------------------------------------------------- fast backward


def backward_tolerance(terms, *arrays):
    # Float32 sums of `terms` products, each bounded by the product of the operands' maxima.
    return (terms + 4) * 2.0**-24 * np.prod([np.abs(a).max() + 1.0 for a in arrays]) * 4


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_backward_matches_ref(isa, rng, num_threads, case):
    x, w, _, kw = make_case(rng, case)
    y = kernels.conv2d.conv2d_fwd_ref(x, w, None, **kw)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    want_dx = kernels.conv2d.conv2d_bwd_data_ref(dy, w, x.shape, **kw)
    want_dw, want_db = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kw)
    o, _, kh, kwd = w.shape
    tol_dx = backward_tolerance(o * kh * kwd, w, dy)
    tol_dw = backward_tolerance(x.shape[0] * y.shape[2] * y.shape[3], x, dy)
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        dx = kernels.conv2d.conv2d_bwd_data(dy, w, x.shape, **kw)
        np.testing.assert_allclose(dx, want_dx, rtol=0, atol=tol_dx)
        dw, db = kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True, **kw)
        np.testing.assert_allclose(dw, want_dw, rtol=0, atol=tol_dw)
        np.testing.assert_allclose(db, want_db, rtol=0, atol=tol_dw)
        dw_only, db_none = kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, **kw)
        assert db_none is None
        np.testing.assert_array_equal(dw_only, dw)


def test_conv2d_backward_exact_on_integers(isa, rng, num_threads):
    # Small integers keep every sum exact: a misplaced patch, tap or scatter shows.
    for case in CASES:
        x, w, _, kw = make_case(rng, case)
        x = np.round(x * 2).astype(np.float32)
        w = np.round(w * 2).astype(np.float32)
        dy = np.round(rng.standard_normal(kernels.conv2d.conv2d_fwd_ref(x, w, **kw).shape) * 2).astype(np.float32)
        np.testing.assert_array_equal(kernels.conv2d.conv2d_bwd_data(dy, w, x.shape, **kw),
                                      kernels.conv2d.conv2d_bwd_data_ref(dy, w, x.shape, **kw), err_msg=case_id(case))
        dw, db = kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True, **kw)
        dw_ref, db_ref = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kw)
        np.testing.assert_array_equal(dw, dw_ref, err_msg=case_id(case))
        np.testing.assert_array_equal(db, db_ref, err_msg=case_id(case))


@pytest.mark.parametrize("case", CASES[:8], ids=case_id)
def test_conv2d_backward_is_the_finite_difference_derivative(rng, case):
    # L(x, w) = <dy, conv(x, w)> in float64; central differences along random directions
    # must match <grad, direction> from the backward kernels.
    x, w, _, kw = make_case(rng, case)
    stride, dilation = pair(kw["stride"]), pair(kw["dilation"])
    pads = explicit_pads(kw["padding"], w.shape[2:], dilation)

    def loss(xv, wv):
        return np.vdot(dy, numpy_conv2d(xv, wv, None, stride, pads, dilation, kw["groups"]))

    dy = rng.standard_normal(kernels.conv2d.conv2d_fwd_ref(x, w, **kw).shape).astype(np.float32).astype(np.float64)
    dx = kernels.conv2d.conv2d_bwd_data(dy.astype(np.float32), w, x.shape, **kw)
    dw, _ = kernels.conv2d.conv2d_bwd_weight(x, dy.astype(np.float32), w.shape, **kw)
    eps = 1e-3
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for _ in range(3):
        u = rng.standard_normal(x.shape)
        v = rng.standard_normal(w.shape)
        fd_x = (loss(x64 + eps * u, w64) - loss(x64 - eps * u, w64)) / (2 * eps)
        fd_w = (loss(x64, w64 + eps * v) - loss(x64, w64 - eps * v)) / (2 * eps)
        np.testing.assert_allclose(np.vdot(dx, u), fd_x, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(np.vdot(dw, v), fd_w, rtol=1e-4, atol=1e-3)


def test_conv2d_backward_reads_views_and_empty_batches(rng):
    base = rng.standard_normal((6, 6, 2, 1), dtype=np.float32)
    x = base.transpose(3, 2, 0, 1)  # a non-contiguous N C H W view
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((4, 4, 3, 1), dtype=np.float32).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(kernels.conv2d.conv2d_bwd_data(dy, w[:, :, ::-1], x.shape),
                               kernels.conv2d.conv2d_bwd_data_ref(dy, w[:, :, ::-1], x.shape), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape)[0],
                               kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape)[0], rtol=1e-5, atol=1e-5)
    empty_dy = np.ones((0, 3, 4, 4), np.float32)
    assert kernels.conv2d.conv2d_bwd_data(empty_dy, w, (0, 2, 6, 6)).shape == (0, 2, 6, 6)
    dw, db = kernels.conv2d.conv2d_bwd_weight(np.ones((0, 2, 6, 6), np.float32), empty_dy, w.shape, bias=True)
    assert (dw == 0).all() and dw.shape == w.shape and (db == 0).all()


@pytest.mark.parametrize("ref", [False, True], ids=["fast", "ref"])
def test_conv2d_backward_without_output_channels_or_positions(ref):
    """No output channel (or no output position) reached the input: its gradient is zero, the
    weight's is empty (once a division by zero)."""
    for o, x_shape, dy_shape in [(0, (2, 3, 5, 5), (2, 0, 3, 3)), (4, (2, 3, 5, 5), (2, 4, 0, 3))]:
        dy = np.ones(dy_shape, np.float32)
        w = np.ones((o, 3, 3, 3), np.float32)
        dx = np.full(x_shape, np.nan, np.float32)
        (ember._C.conv2d_bwd_data_ref if ref else ember._C.conv2d_bwd_data)(dy, w, dx, 1, 1, 0, 0, 1, 1, 1)
        assert (dx == 0).all()
        dw = np.full(w.shape, np.nan, np.float32)
        (ember._C.conv2d_bwd_weight_ref if ref else ember._C.conv2d_bwd_weight)(
            np.ones(x_shape, np.float32), dy, dw, None, 1, 1, 0, 0, 1, 1, 1)
        assert (dw == 0).all()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "ref"])
def test_conv2d_backward_bad_input(fast):
    bwd_data = kernels.conv2d.conv2d_bwd_data if fast else kernels.conv2d.conv2d_bwd_data_ref
    bwd_weight = kernels.conv2d.conv2d_bwd_weight if fast else kernels.conv2d.conv2d_bwd_weight_ref
    dy = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"grad_output must have the forward output's shape \(1, 2, 4, 4\)"):
        bwd_data(dy[:, :, :3], W, X.shape)
    with pytest.raises(ValueError, match="input_shape must be 4 non-negative ints"):
        bwd_data(dy, W, (1, 4, 6))
    with pytest.raises(TypeError, match="grad_output must have dtype float32"):
        bwd_data(dy.astype(np.float16), W, X.shape)
    with pytest.raises(ValueError, match="input has 3 channels"):
        bwd_data(dy, W, (1, 3, 6, 6))
    with pytest.raises(ValueError, match="grad_output must have the forward output's shape"):
        bwd_weight(X, dy[:, :1], W.shape)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        bwd_weight(X, dy, W.shape, stride=0)
    with pytest.raises(TypeError, match="grad_output must have dtype float64 like the input"):
        bwd_weight(X.astype(np.float64), dy, W.shape)


@pytest.mark.parametrize("fwd", [ember._C.conv2d_fwd, ember._C.conv2d_fwd_bf16], ids=["fp32", "bf16"])
def test_conv2d_output_apart_from_the_bias(fwd):
    """A bias that lies inside the output would be overwritten while the kernel still reads it."""
    x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    y = np.empty((2, 4, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory with bias"):
        fwd(x, w, y.reshape(-1)[36:40], y, 1, 1, 0, 0, 1, 1, 1, False)


# --------------------------------------------------------------------------- bf16 products

BF16_GEOMETRIES = [  # (n, c, h, w, o, k, stride, padding, dilation)
    (2, 64, 32, 32, 64, 3, 1, 1, 1),   # the output rows are whole 32-pixel strips
    (3, 5, 9, 11, 7, 3, 1, 1, 1),      # strips spanning several output rows, clipped at both edges
    (2, 8, 10, 10, 16, 3, 2, 1, 1),    # stride 2: read element by element
    (2, 8, 11, 9, 16, 3, (2, 1), 1, 1),  # every other row, unit stride along it: the table of loads
    (1, 24, 13, 7, 33, 5, 1, 2, 2),    # dilation, an output width of 3
    (2, 40, 6, 6, 17, 1, 1, 0, 1),     # 1x1
    (1, 3, 32, 32, 32, 3, 1, 0, 1),    # a first layer: K = 27, one k-tile
]


@pytest.mark.parametrize("geometry", BF16_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_bf16_forward_is_the_reference_on_rounded_operands(isa, rng, geometry):
    """bf16=True rounds input and weight to bf16 and sums the (exact) products in float32."""
    import ml_dtypes

    n, c, h, w, o, k, s, p, d = geometry
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    y = kernels.conv2d.conv2d_fwd(x, wt, b, stride=s, padding=p, dilation=d, relu=True, bf16=True)

    def rounded(a):
        return a.astype(ml_dtypes.bfloat16).astype(np.float64)

    want = kernels.conv2d.conv2d_fwd_ref(rounded(x), rounded(wt), b.astype(np.float64), stride=s, padding=p,
                                         dilation=d, relu=True)
    scale = kernels.conv2d.conv2d_fwd_ref(np.abs(rounded(x)), np.abs(rounded(wt)), np.abs(b).astype(np.float64),
                                          stride=s, padding=p, dilation=d)
    assert y.dtype == np.float32 and y.shape == want.shape
    assert np.all(np.abs(y - want) <= (c * k * k + 4) * 2.0**-24 * scale + 1e-30)


@pytest.mark.parametrize("geometry", [g for g in BF16_GEOMETRIES if g[6] == 1], ids=lambda g: "x".join(map(str, g)))
def test_bf16_input_gradient_is_the_reference_on_rounded_operands(isa, rng, geometry):
    """At unit stride: the bf16 forward of grad_output with the kernel flipped."""
    import ml_dtypes

    n, c, h, w, o, k, _, p, d = geometry
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    oh, ow = h + 2 * p - d * (k - 1), w + 2 * p - d * (k - 1)
    dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    dx = kernels.conv2d.conv2d_bwd_data(dy, wt, (n, c, h, w), padding=p, dilation=d, bf16=True)

    def rounded(a):
        return a.astype(ml_dtypes.bfloat16).astype(np.float64)

    want = kernels.conv2d.conv2d_bwd_data_ref(rounded(dy), rounded(wt), (n, c, h, w), padding=p, dilation=d)
    scale = kernels.conv2d.conv2d_bwd_data_ref(np.abs(rounded(dy)), np.abs(rounded(wt)), (n, c, h, w), padding=p,
                                               dilation=d)
    assert np.all(np.abs(dx - want) <= (o * k * k + 4) * 2.0**-24 * scale + 1e-30)


@pytest.mark.parametrize("geometry", BF16_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_bf16_weight_gradient_is_the_reference_on_rounded_operands(isa, rng, geometry):
    """im2col(x) @ grad_output^T per image in bf16; the bias gradient from the float32 values."""
    import ml_dtypes

    n, c, h, w, o, k, s, p, d = geometry
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    sh, sw = (s, s) if isinstance(s, int) else s
    oh, ow = (h + 2 * p - d * (k - 1) - 1) // sh + 1, (w + 2 * p - d * (k - 1) - 1) // sw + 1
    dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    dw, db = kernels.conv2d.conv2d_bwd_weight(x, dy, (o, c, k, k), stride=s, padding=p, dilation=d, bias=True,
                                              bf16=True)

    def rounded(a):
        return a.astype(ml_dtypes.bfloat16).astype(np.float64)

    args = dict(stride=s, padding=p, dilation=d)
    want, _ = kernels.conv2d.conv2d_bwd_weight_ref(rounded(x), rounded(dy), (o, c, k, k), **args)
    scale, _ = kernels.conv2d.conv2d_bwd_weight_ref(np.abs(rounded(x)), np.abs(rounded(dy)), (o, c, k, k), **args)
    assert np.all(np.abs(dw - want) <= (n * oh * ow + 4) * 2.0**-24 * scale + 1e-30)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6, atol=1e-5)


def test_bf16_with_no_images_writes_zero_gradients(isa, rng):
    """An empty batch: the weight and bias gradients are zero (not the scratch an earlier call
    left), and no image-sized scratch is asked for."""
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    kernels.conv2d.conv2d_bwd_weight(x, dy, (8, 16, 3, 3), bias=True, bf16=True)  # leaves partial sums behind
    dw, db = kernels.conv2d.conv2d_bwd_weight(x[:0], dy[:0], (8, 16, 3, 3), bias=True, bf16=True)
    assert not dw.any() and not db.any()
    huge = np.empty((0, 2, 10**6, 10**6), np.float32)  # one image would be 8 TB
    assert kernels.conv2d.conv2d_fwd(huge, np.ones((4, 2, 1, 1), np.float32), bf16=True).shape == (0, 4, 10**6, 10**6)


OUT_OF_MEMORY_IN_A_THREAD = """
import re, resource
import numpy as np
import ember
from ember import kernels

ember.set_num_threads(2)
x = np.ones((2, 1, 7000, 7000), np.float32)
w = np.ones((1, 1, 1, 1), np.float32)
kernels.conv2d.conv2d_fwd(x[:, :, :8, :8].copy(), w, bf16=True)  # the pool's threads are started
y = np.empty_like(x)
vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (100 << 20), resource.RLIM_INFINITY))  # one image's scratch, not two
try:
    ember._C.conv2d_fwd_bf16(x, w, None, y, 1, 1, 0, 0, 1, 1, 1, False)  # the output exists: only scratch is asked for
    print("returned")
except MemoryError:
    print("MemoryError")
"""


@pytest.mark.skipif(sys.platform != "linux" or "asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="needs Linux's address-space limit, which AddressSanitizer's shadow memory defeats")
def test_a_thread_out_of_memory_is_a_memory_error_not_a_crash():
    """A kernel thread that cannot have its scratch raises MemoryError in Python, once every
    thread has finished; it never terminates the process."""
    run = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_IN_A_THREAD], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() in ("MemoryError", "returned"), run.stdout
    if run.stdout.strip() == "returned":
        pytest.skip("the allocator found room for both threads' scratch under the limit")


def test_bf16_forward_refuses_what_it_does_not_take(rng):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="bf16 takes groups=1 only"):
        kernels.conv2d.conv2d_fwd(x, rng.standard_normal((4, 2, 3, 3)).astype(np.float32), groups=2, bf16=True)
    with pytest.raises(TypeError, match="bf16 takes float32"):
        kernels.conv2d.conv2d_fwd(x.astype(np.float64), np.ones((2, 4, 3, 3)), bf16=True)
    with pytest.raises(ValueError, match="no reference of its own"):
        kernels.conv2d.conv2d_fwd(x, np.ones((2, 4, 3, 3), np.float32), bf16=True, reference=True)
    dy = rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="unit stride"):
        kernels.conv2d.conv2d_bwd_data(dy, np.ones((2, 4, 3, 3), np.float32), (1, 4, 5, 5), stride=2, bf16=True)
    with pytest.raises(ValueError, match="groups=1 only"):
        kernels.conv2d.conv2d_bwd_weight(x, rng.standard_normal((1, 4, 3, 3)).astype(np.float32), (4, 2, 3, 3),
                                         groups=2, bf16=True)
    assert kernels.conv2d.bf16_pays(x, np.ones((64, 4, 3, 3), np.float32)) == (False, True)  # 36 and 576 products
    assert kernels.conv2d.bf16_pays(x, np.ones((8, 4, 3, 3), np.float32), stride=2) == (False, False)
