"""ember._cuda.cross_entropy_fwd/bwd against the CPU reference (ember._C's cross-entropy
oracle) on the host copy: hard and soft targets, class weights, ignore_index, label smoothing,
NaN and -inf rows, every group size (a warp, 256 and 512 threads per row) and row alignment,
in-place backward, and bad targets reported through the error word."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_close, cp, dev, host, poisoned, ref_fn, sync

pytestmark = CUDA_MARKS

INT_MAX = 2**31 - 1


def fwd_ref():
    return ref_fn("cross_entropy_fwd_ref", "xent_fwd_ref")


def bwd_ref():
    return ref_fn("cross_entropy_bwd_ref", "xent_bwd_ref")


def make(rng, b, v, soft, weighted, ignore_some):
    z = (rng.standard_normal((b, v)) * 3).astype(np.float32)
    if soft:
        t = rng.random((b, v)).astype(np.float32)
        t /= np.maximum(t.sum(axis=1, keepdims=True), 1e-30)
        t[:, ::7] = 0.0  # zero targets (skipped terms)
    else:
        t = rng.integers(0, v, size=b).astype(np.int64)
        if ignore_some and b:
            t[:: 3] = -100
    w = rng.random(v).astype(np.float32) + 0.5 if weighted else None
    return z, t, w


def run_fwd(z, t, w, eps, ignore_index=-100):
    b = z.shape[0]
    lse, nll, smooth = poisoned((b,), np.float64), poisoned((b,), np.float64), poisoned((b,), np.float64)
    err = cp.full((1,), INT_MAX, dtype=cp.int32)
    K.cross_entropy_fwd(dev(z), dev(t), None if w is None else dev(w), eps, ignore_index, lse, nll, smooth, err)
    sync()
    return host(lse), host(nll), host(smooth), int(host(err)[0])


def ref_forward(z, t, w, eps, ignore_index=-100):
    b = z.shape[0]
    lse, nll, smooth = np.empty(b), np.empty(b), np.empty(b)
    fwd_ref()(z, t, w, eps, ignore_index, lse, nll, smooth)
    return lse, nll, smooth


def loss_tol(lse):
    # float32 rounding at the scale of the log-sum-exp, as the CPU tests bound it
    return 1e-5 + 4e-6 * np.abs(np.where(np.isfinite(lse), lse, 0.0))


V_SIZES = [1, 2, 7, 33, 1000, 1024, 1025, 4099, 8192, 8193, 50257]


@pytest.mark.parametrize("v", V_SIZES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_forward_matches_reference(rng, v, soft, weighted, eps):
    b = 5 if v > 5000 else 37
    z, t, w = make(rng, b, v, soft, weighted, ignore_some=True)
    got = run_fwd(z, t, w, eps)
    want = ref_forward(z, t, w, eps)
    assert got[3] == INT_MAX, f"error word set to {got[3]} for valid targets"
    wmax = 1.0 if w is None else float(w.max())
    mult = {"lse": 1.0, "nll": wmax, "smooth": v * wmax}
    for name, g, r in zip(("lse", "nll", "smooth"), got[:3], want):
        assert_close(g, r, 2e-6, 2 * loss_tol(want[0]) * mult[name],
                     f"{name} V={v} soft={soft} weighted={weighted} eps={eps}")


@pytest.mark.parametrize("v", [7, 1000, 5000, 50257])
def test_forward_nan_and_masked_rows(rng, v):
    z, t, w = make(rng, 6, v, False, False, ignore_some=False)
    z[1, v // 2] = np.nan  # a NaN row
    z[2, :] = -np.inf  # every class masked
    z[3, :] = -np.inf
    z[3, v - 1] = np.nan  # NaN among -inf
    z[4, 0] = np.inf  # +inf: NaN as in the double reference
    for eps in (0.0, 0.1):
        got = run_fwd(z, t, w, eps)
        want = ref_forward(z, t, w, eps)
        for name, g, r in zip(("lse", "nll", "smooth"), got[:3], want):
            assert_close(g, r, 2e-6, loss_tol(want[0]) * v, f"{name} (NaN/inf rows) V={v} eps={eps}")


def test_forward_zero_rows(rng):
    got = run_fwd(np.zeros((0, 9), np.float32), np.zeros(0, np.int64), None, 0.0)
    assert got[3] == INT_MAX


@pytest.mark.parametrize("v", [10, 3000, 20000])
def test_bad_targets_give_nan_rows_and_report(rng, v):
    z, t, w = make(rng, 8, v, False, True, ignore_some=False)
    t[5] = v  # out of range
    t[6] = -3
    lse, nll, smooth, err = run_fwd(z, t, w, 0.1)
    assert err == 5, f"error word should name row 5 (the first bad row), got {err}"
    assert np.isnan(nll[5]) and np.isnan(nll[6]) and np.isnan(lse[5]), "bad rows must be NaN, never silently wrong"
    assert not np.isnan(nll[[0, 1, 2, 3, 4, 7]]).any()
    scale = dev(np.ones(8, np.float32))
    out = poisoned((8, v))
    errw = cp.full((1,), INT_MAX, dtype=cp.int32)
    K.cross_entropy_bwd(dev(z), dev(t), dev(w), 0.1, -100, dev(np.nan_to_num(lse)), scale, out, errw)
    sync()
    g = host(out)
    assert int(host(errw)[0]) == 5
    assert np.isnan(g[5]).all() and np.isnan(g[6]).all()
    assert not np.isnan(g[[0, 1, 2, 3, 4, 7]]).any()


def run_bwd(z, t, w, eps, lse, scale, in_place=False):
    zd = dev(z)
    out = zd if in_place else poisoned(z.shape)
    K.cross_entropy_bwd(zd, dev(t), None if w is None else dev(w), eps, -100, dev(lse), dev(scale), out)
    sync()
    return host(out)


@pytest.mark.parametrize("v", V_SIZES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_backward_matches_reference(rng, v, soft, weighted, eps):
    b = 5 if v > 5000 else 37
    z, t, w = make(rng, b, v, soft, weighted, ignore_some=True)
    lse = ref_forward(z, t, w, eps)[0]
    scale = (rng.random(b).astype(np.float32) + 0.1) / b
    scale[1::5] = 0.0
    if not soft:
        scale[t == -100] = 0.0
    got = run_bwd(z, t, w, eps, lse, scale)
    want = np.empty_like(z)
    bwd_ref()(z, t, w, eps, -100, lse, scale, want)
    wmax = 1.0 if w is None else float(w.max())
    assert_close(got, want, 1e-5, 2e-6 * wmax * float(scale.max() + 1e-30) * 4,
                 f"dlogits V={v} soft={soft} weighted={weighted} eps={eps}")


@pytest.mark.parametrize("v", [7, 1025, 50257])
def test_backward_in_place(rng, v):
    z, t, w = make(rng, 4, v, False, True, ignore_some=True)
    lse = ref_forward(z, t, w, 0.1)[0]
    scale = np.full(4, 0.25, np.float32)
    scale[t == -100] = 0.0
    got = run_bwd(z, t, w, 0.1, lse, scale, in_place=True)
    want = np.empty_like(z)
    bwd_ref()(z, t, w, 0.1, -100, lse, scale, want)
    assert_close(got, want, 1e-5, 1e-6, f"in-place dlogits V={v}")


def test_backward_unaligned_out(rng):
    # out whose rows sit at a different 16-byte phase than the logits': the scalar path.
    z, t, w = make(rng, 3, 1001, False, False, ignore_some=False)
    lse = ref_forward(z, t, w, 0.0)[0]
    scale = np.full(3, 1.0, np.float32)
    buf = poisoned((3 * 1001 + 1,))
    out = buf[1:].reshape(3, 1001)
    K.cross_entropy_bwd(dev(z), dev(t), None, 0.0, -100, dev(lse), dev(scale), out)
    sync()
    want = np.empty_like(z)
    bwd_ref()(z, t, w, 0.0, -100, lse, scale, want)
    assert_close(host(out), want, 1e-5, 1e-6, "unaligned out")


def test_argument_checks(rng):
    z = dev(rng.standard_normal((4, 5)).astype(np.float32))
    t = dev(np.array([0, 1, 2, 3], np.int64))
    outs = [poisoned((4,), np.float64) for _ in range(3)]
    with pytest.raises(TypeError, match="host array"):
        K.cross_entropy_fwd(cp.asnumpy(z), t, None, 0.0, -100, *outs)
    with pytest.raises(TypeError, match="int64"):
        K.cross_entropy_fwd(z, t.astype(cp.int32), None, 0.0, -100, *outs)
    with pytest.raises(ValueError, match="label_smoothing"):
        K.cross_entropy_fwd(z, t, None, 1.5, -100, *outs)
    with pytest.raises(ValueError, match="out_lse"):
        K.cross_entropy_fwd(z, t, None, 0.0, -100, poisoned((3,), np.float64), outs[1], outs[2])


def test_out_overlapping_logits_is_refused(rng):
    buf = dev(rng.standard_normal(21).astype(np.float32))
    z = buf[:20].reshape(4, 5)
    shifted = buf[1:21].reshape(4, 5)
    t = dev(np.array([0, 1, 2, 3], np.int64))
    with pytest.raises(ValueError, match="partly overlaps"):
        K.cross_entropy_bwd(z, t, None, 0.0, -100, dev(np.zeros(4)), dev(np.ones(4, np.float32)), shifted)
