"""ember._cuda.conv2d_fwd / conv2d_bwd_data / conv2d_bwd_weight (implicit GEMMs) against the CPU
references (ember._C.conv2d_*_ref) on host copies, over strides, asymmetric padding, dilation,
groups (depthwise too), bias and ReLU; backward-weight's K split (with and without caller scratch)
is checked to be deterministic bit for bit."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_close, assert_equal, cp, dev, host, poisoned, ref_fn, sync

pytestmark = CUDA_MARKS

# (N, C, H, W, O, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, groups)
CASES = [
    (2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    (3, 4, 9, 7, 6, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1, 2),
    (2, 6, 11, 13, 6, 3, 3, 2, 3, 2, 1, 1, 2, 2, 1, 6),  # depthwise, stride and dilation
    (1, 8, 10, 10, 16, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    (2, 5, 12, 9, 7, 5, 4, 3, 2, 2, 1, 2, 2, 1, 2, 1),
    (4, 3, 32, 32, 32, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1),  # the seed CNN's first layer
    (2, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4),
    (1, 130, 5, 5, 140, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 1),  # more than one 128-wide tile each way
]


def geometry(case):
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups = case
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, oh, ow


def cid(case):
    return "N{}C{}H{}W{}O{}_k{}x{}_s{}x{}_p{}{}{}{}_d{}x{}_g{}".format(*case)


@pytest.mark.parametrize("case", CASES, ids=cid)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_forward(rng, case, with_bias, relu):
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, oh, ow = geometry(case)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32) if with_bias else None
    y_ref = np.empty((n, o, oh, ow), np.float32)
    ref_fn("conv2d_fwd_ref")(x, wt, bias, y_ref, sh, sw, pt, pl, dh, dw, groups, relu)
    y = poisoned((n, o, oh, ow))
    K.conv2d_fwd(dev(x), dev(wt), None if bias is None else dev(bias), y, sh, sw, pt, pl, dh, dw, groups, relu)
    sync()
    kdim = (c // groups) * kh * kw
    scale = 1.0 + np.abs(y_ref)
    assert_close(host(y), y_ref, 0.0, 4 * (kdim + 4) * 2.0**-24 * scale * 4, f"conv2d_fwd {cid(case)}")


@pytest.mark.parametrize("case", CASES, ids=cid)
def test_backward(rng, case):
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, oh, ow = geometry(case)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c // groups, kh, kw)).astype(np.float32)
    dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    dx_ref = np.empty_like(x)
    ref_fn("conv2d_bwd_data_ref")(dy, wt, dx_ref, sh, sw, pt, pl, dh, dw, groups)
    dx = poisoned(x.shape)
    K.conv2d_bwd_data(dev(dy), dev(wt), dx, sh, sw, pt, pl, dh, dw, groups)
    dw_ref, db_ref = np.empty_like(wt), np.empty(o, np.float32)
    ref_fn("conv2d_bwd_weight_ref")(x, dy, dw_ref, db_ref, sh, sw, pt, pl, dh, dw, groups)
    dwt, db = poisoned(wt.shape), poisoned((o,))
    K.conv2d_bwd_weight(dev(x), dev(dy), dwt, db, sh, sw, pt, pl, dh, dw, groups)
    sync()
    kd = (o // groups) * kh * kw
    kw_ = n * oh * ow
    assert_close(host(dx), dx_ref, 0.0, 16 * (kd + 4) * 2.0**-24 * (1 + np.abs(dx_ref)) * 4, f"conv2d_bwd_data {cid(case)}")
    assert_close(host(dwt), dw_ref, 0.0, 4 * (kw_ + 4) * 2.0**-24 * (1 + np.abs(dw_ref)) * 4,
                 f"conv2d_bwd_weight {cid(case)}")
    assert_close(host(db), db_ref, 1e-6, 1e-7 * (kw_ + 16), f"conv2d_bwd_weight bias {cid(case)}")


def test_bwd_weight_split_is_deterministic(rng):
    # The seed CNN's first layer at batch 64: K = 64 * 30 * 30 is split into many slices.
    n, c, h, w, o = 64, 3, 32, 32, 32
    x = dev(rng.standard_normal((n, c, h, w)).astype(np.float32))
    dy = dev(rng.standard_normal((n, o, 30, 30)).astype(np.float32))
    need = K.conv2d_bwd_weight_scratch_size(x, dy, poisoned((o, c, 3, 3)), 1, 1, 0, 0, 1, 1, 1)
    assert need > 0, "this problem should split its K"
    first = poisoned((o, c, 3, 3))
    K.conv2d_bwd_weight(x, dy, first, None, 1, 1, 0, 0, 1, 1, 1)
    scratch = cp.full(need + 5, np.nan, dtype=cp.float32)
    for _ in range(3):
        again = poisoned((o, c, 3, 3))
        K.conv2d_bwd_weight(x, dy, again, None, 1, 1, 0, 0, 1, 1, 1, scratch)
        sync()
        assert_equal(host(again), host(first), "conv2d_bwd_weight must be bitwise reproducible")
    dw_ref = np.empty((o, c, 3, 3), np.float32)
    ref_fn("conv2d_bwd_weight_ref")(host(x), host(dy), dw_ref, None, 1, 1, 0, 0, 1, 1, 1)
    assert_close(host(first), dw_ref, 1e-5, 1e-3, "conv2d_bwd_weight (split K)")
    with pytest.raises(ValueError, match="needs"):
        K.conv2d_bwd_weight(x, dy, again, None, 1, 1, 0, 0, 1, 1, 1, cp.empty(1, cp.float32))


def test_conv_checks(rng):
    x = dev(rng.standard_normal((1, 4, 5, 5)).astype(np.float32))
    wt = dev(rng.standard_normal((2, 4, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="groups"):
        K.conv2d_fwd(x, wt, None, poisoned((1, 2, 3, 3)), 1, 1, 0, 0, 1, 1, 3, False)
    with pytest.raises(ValueError, match="stride"):
        K.conv2d_fwd(x, wt, None, poisoned((1, 2, 3, 3)), 0, 1, 0, 0, 1, 1, 1, False)
    with pytest.raises(TypeError, match="host array"):
        K.conv2d_fwd(host(x), wt, None, poisoned((1, 2, 3, 3)), 1, 1, 0, 0, 1, 1, 1, False)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.conv2d_fwd(x[:, ::2], wt[:, :2], None, poisoned((1, 2, 3, 3)), 1, 1, 0, 0, 1, 1, 1, False)
