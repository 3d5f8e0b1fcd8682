"""ember._cuda pooling against the CPU references (ember._C.*_ref) on the host copy: max (values and
indices, ties, NaN, padding, dilation, overlapping windows, ceil-mode sizes), average with and
without count_include_pad, adaptive average, forward and backward; outputs poisoned first."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_close, assert_equal, dev, host, poisoned, ref_fn, sync

pytestmark = CUDA_MARKS


def out_size(size, k, pad, stride, dil, ceil_mode):
    num = size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# (N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
MAX_CASES = [
    (2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1, False),
    (1, 2, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1, False),
    (2, 2, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1, True),
    (1, 1, 10, 11, 3, 2, 1, 1, 1, 0, 1, 1, False),  # overlapping windows
    (1, 2, 12, 12, 2, 3, 2, 1, 1, 1, 2, 3, False),  # dilation
    (3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, False),
    (1, 1, 130, 129, 2, 2, 2, 2, 0, 0, 1, 1, False),  # a plane larger than the shared-memory path
    (4, 8, 30, 30, 2, 2, 2, 2, 0, 0, 1, 1, False),
]


def case_id(c):
    return "N{}C{}H{}W{}_k{}x{}_s{}x{}_p{}x{}_d{}x{}{}".format(*c[:12], "_ceil" if c[12] else "")


@pytest.mark.parametrize("case", MAX_CASES, ids=case_id)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool(rng, case, ties):
    n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode = case
    oh, ow = out_size(h, kh, ph, sh, dh, ceil_mode), out_size(w, kw, pw, sw, dw, ceil_mode)
    x = rng.integers(-3, 3, size=(n, c, h, w)).astype(np.float32) if ties else \
        rng.standard_normal((n, c, h, w)).astype(np.float32)
    if x.size > 5:
        x.flat[rng.integers(0, x.size, size=2)] = np.nan
    y_ref, i_ref = np.empty((n, c, oh, ow), np.float32), np.empty((n, c, oh, ow), np.int64)
    ref_fn("max_pool2d_fwd_ref")(x, y_ref, i_ref, kh, kw, sh, sw, ph, pw, dh, dw)
    y, idx = poisoned((n, c, oh, ow)), poisoned((n, c, oh, ow), np.int64)
    K.max_pool2d_fwd(dev(x), y, idx, kh, kw, sh, sw, ph, pw, dh, dw)
    K.max_pool2d_fwd(dev(x), y2 := poisoned((n, c, oh, ow)), None, kh, kw, sh, sw, ph, pw, dh, dw)
    sync()
    assert_equal(host(y), y_ref, f"max_pool2d_fwd values {case_id(case)}")
    assert_equal(host(y2), y_ref, f"max_pool2d_fwd values without indices {case_id(case)}")
    assert_equal(host(idx), i_ref, f"max_pool2d_fwd indices {case_id(case)}")
    dy = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
    dx_ref = np.empty_like(x)
    ref_fn("max_pool2d_bwd_ref")(dy, i_ref, dx_ref)
    dx = poisoned(x.shape)
    K.max_pool2d_bwd(dev(dy), dev(i_ref), dx)
    sync()
    assert_close(host(dx), dx_ref, 1e-6, 1e-6, f"max_pool2d_bwd {case_id(case)}")


AVG_CASES = [
    (2, 3, 8, 8, 2, 2, 2, 2, 0, 0, False),
    (1, 2, 7, 9, 3, 3, 2, 2, 1, 1, False),
    (2, 2, 7, 9, 3, 3, 2, 2, 1, 1, True),
    (1, 1, 10, 11, 3, 2, 1, 1, 1, 1, False),
    (1, 2, 5, 5, 5, 5, 1, 1, 2, 2, False),
    (3, 4, 33, 17, 4, 3, 3, 2, 2, 1, True),
]


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: "N{}C{}H{}W{}_k{}x{}_s{}x{}_p{}x{}".format(*c[:10]))
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_avg_pool(rng, case, count_include_pad):
    n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode = case
    oh, ow = out_size(h, kh, ph, sh, 1, ceil_mode), out_size(w, kw, pw, sw, 1, ceil_mode)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    y_ref = np.empty((n, c, oh, ow), np.float32)
    ref_fn("avg_pool2d_fwd_ref")(x, y_ref, kh, kw, sh, sw, ph, pw, count_include_pad)
    y = poisoned((n, c, oh, ow))
    K.avg_pool2d_fwd(dev(x), y, kh, kw, sh, sw, ph, pw, count_include_pad)
    dy = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
    dx_ref = np.empty_like(x)
    ref_fn("avg_pool2d_bwd_ref")(dy, dx_ref, kh, kw, sh, sw, ph, pw, count_include_pad)
    dx = poisoned(x.shape)
    K.avg_pool2d_bwd(dev(dy), dx, kh, kw, sh, sw, ph, pw, count_include_pad)
    sync()
    assert_close(host(y), y_ref, 1e-6, 1e-6, "avg_pool2d_fwd")
    assert_close(host(dx), dx_ref, 1e-6, 1e-6, "avg_pool2d_bwd")


@pytest.mark.parametrize("hw,ohw", [((7, 9), (1, 1)), ((7, 9), (3, 4)), ((8, 8), (8, 8)), ((5, 13), (7, 3)),
                                    ((32, 32), (5, 5))])
def test_adaptive_avg_pool(rng, hw, ohw):
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    y_ref = np.empty((2, 3) + ohw, np.float32)
    ref_fn("adaptive_avg_pool2d_fwd_ref")(x, y_ref)
    y = poisoned((2, 3) + ohw)
    K.adaptive_avg_pool2d_fwd(dev(x), y)
    dy = rng.standard_normal((2, 3) + ohw).astype(np.float32)
    dx_ref = np.empty_like(x)
    ref_fn("adaptive_avg_pool2d_bwd_ref")(dy, dx_ref)
    dx = poisoned(x.shape)
    K.adaptive_avg_pool2d_bwd(dev(dy), dx)
    sync()
    assert_close(host(y), y_ref, 1e-6, 1e-6, f"adaptive_avg_pool2d_fwd {hw}->{ohw}")
    assert_close(host(dx), dx_ref, 1e-6, 1e-6, f"adaptive_avg_pool2d_bwd {hw}->{ohw}")


def test_pool_checks(rng):
    x = dev(rng.standard_normal((1, 1, 4, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="does not match"):
        K.max_pool2d_fwd(x, poisoned((1, 1, 3, 3)), None, 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="int64"):
        K.max_pool2d_fwd(x, poisoned((1, 1, 2, 2)), poisoned((1, 1, 2, 2), np.int32), 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="host array"):
        K.avg_pool2d_fwd(x, np.zeros((1, 1, 2, 2), np.float32), 2, 2, 2, 2, 0, 0, True)
