"""Softmax cross-entropy: the reference against a float64 NumPy composition (and PyTorch when
installed), the fast kernels against the reference on every ISA and thread count, numerics at
the edges (huge, masked and NaN logits, every target ignored), gradients against finite
differences, in-place backward and the argument checks."""

import numpy as np
import pytest

import ember
from ember import kernels

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None


def np_log_softmax(z):
    z = z.astype(np.float64)
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return z - m - np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))


def np_xent(z, t, w=None, ignore_index=-100, eps=0.0, reduction="mean"):
    """PyTorch's F.cross_entropy in float64: the per-row losses and the reduction."""
    b, v = z.shape
    logp = np_log_softmax(z)
    wv = np.ones(v) if w is None else w.astype(np.float64)
    with np.errstate(invalid="ignore"):
        if t.ndim == 2:
            q = (1.0 - eps) * t.astype(np.float64) + eps / v
            rows = -np.sum(np.where(q * wv != 0, logp * q * wv, 0.0), axis=1)
            denom = float(b)
        else:
            valid = t != ignore_index
            tt = np.where(valid, t, 0)
            nll = -wv[tt] * logp[np.arange(b), tt]
            smooth = -np.sum(logp * wv, axis=1) if eps > 0 else np.zeros(b)
            rows = np.where(valid, (1.0 - eps) * nll + eps / v * smooth, 0.0)
            denom = wv[tt][valid].sum()
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return rows.sum() / denom


def np_xent_grad(z, t, w=None, ignore_index=-100, eps=0.0, reduction="mean", g=1.0):
    """d loss / d logits in float64 (softmax minus the weighted target, scaled)."""
    b, v = z.shape
    p = np.exp(np_log_softmax(z))
    wv = np.ones(v) if w is None else w.astype(np.float64)
    if t.ndim == 2:
        q = ((1.0 - eps) * t.astype(np.float64) + eps / v) * wv
        if reduction == "none":
            scale = np.broadcast_to(np.asarray(g, float), (b,)).copy()
        else:
            scale = np.full(b, g / b if reduction == "mean" else g)
    else:
        valid = t != ignore_index
        tt = np.where(valid, t, 0)
        q = np.tile(eps / v * wv, (b, 1))
        q[np.arange(b), tt] += (1.0 - eps) * wv[tt]
        q[~valid] = 0.0
        denom = wv[tt][valid].sum()
        if reduction == "none":
            scale = np.broadcast_to(np.asarray(g, float), (b,)).copy()
        else:
            scale = np.full(b, g / denom if reduction == "mean" and denom else (0.0 if reduction == "mean" else g))
        scale[~valid] = 0.0
    a = q.sum(axis=1, keepdims=True)
    return scale[:, None] * (a * p - q)


def make(rng, b, v, soft=False, ignore_index=-100, scale=3.0):
    z = (rng.standard_normal((b, v)) * scale).astype(np.float32)
    if soft:
        t = rng.random((b, v)).astype(np.float32)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, v, b)
        if b > 1:
            t[rng.random(b) < 0.25] = ignore_index
    return z, t


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.1},
    {"weight": True},
    {"weight": True, "label_smoothing": 0.3, "reduction": "sum"},
    {"weight": True, "reduction": "none", "label_smoothing": 1.0},
    {"ignore_index": 2},
]
SHAPES = [(1, 1), (3, 1), (1, 7), (5, 16), (4, 17), (64, 1000), (2, 50000), (4096, 10), (33, 333)]


def kwargs_for(rng, v, opts):
    kw = dict(opts)
    if kw.get("weight"):
        kw["weight"] = (rng.random(v) + 0.1).astype(np.float32)
    return kw


def loss_atol(z, lse, kw):
    """What float32 exponentials leave of a loss: a row's loss is lse - z_t (with smoothing, minus
    the mean z too), and lse is a few float32 roundings off at its own scale. A confidently
    right row's small loss does not shrink that error, so it bounds the absolute error."""
    w = kw["weight"].max() if "weight" in kw else 1.0
    return 4 * 2.0**-24 * (np.abs(lse).max(initial=0.0) + np.abs(z).max(initial=0.0)) * w


def np_kwargs(kw):
    return {"w": kw.get("weight"), "ignore_index": kw.get("ignore_index", -100),
            "eps": kw.get("label_smoothing", 0.0), "reduction": kw.get("reduction", "mean")}


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_ref_matches_numpy(rng, shape, opts, soft):
    if soft and "ignore_index" in opts:
        pytest.skip("ignore_index applies to class targets only")
    z, t = make(rng, *shape, soft=soft, ignore_index=opts.get("ignore_index", -100))
    kw = kwargs_for(rng, shape[1], opts)
    loss, lse = kernels.cross_entropy.cross_entropy_fwd_ref(z, t, return_lse=True, **kw)
    want = np_xent(z, t, **np_kwargs(kw))
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(lse, z.astype(np.float64).max(1) - np_log_softmax(z).max(1), rtol=1e-12, atol=1e-12)
    dz = kernels.cross_entropy.cross_entropy_bwd_ref(z, t, lse, **kw) if kw.get("reduction") != "none" else \
        kernels.cross_entropy.cross_entropy_bwd_ref(z, t, lse, np.ones(shape[0]), **kw)
    grad = np_xent_grad(z, t, **np_kwargs(kw))
    np.testing.assert_allclose(dz, grad, rtol=1e-5, atol=1e-6 * (np.abs(grad).max() + 1e-30))


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fast_matches_ref(isa, num_threads, rng, shape, opts, soft):
    if soft and "ignore_index" in opts:
        pytest.skip("ignore_index applies to class targets only")
    z, t = make(rng, *shape, soft=soft, ignore_index=opts.get("ignore_index", -100))
    kw = kwargs_for(rng, shape[1], opts)
    want, want_lse = kernels.cross_entropy.cross_entropy_fwd_ref(z, t, return_lse=True, **kw)
    g = np.linspace(0.5, 1.5, shape[0]) if kw.get("reduction") == "none" else 0.75
    want_dz = kernels.cross_entropy.cross_entropy_bwd_ref(z, t, want_lse, g, **kw)
    # The gradient's scale: the largest row scale times the largest weight (a row's entries
    # can all cancel to 0, as with one class).
    grad_scale = np.abs(want_dz).max(initial=0.0) + np.max(np.abs(g)) * (kw["weight"].max() if "weight" in kw else 1)
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True, **kw)
        np.testing.assert_allclose(loss, want, rtol=1e-6, atol=loss_atol(z, want_lse, kw))
        np.testing.assert_allclose(lse, want_lse, rtol=1e-6, atol=1e-6)
        dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse, g, **kw)
        np.testing.assert_allclose(dz, want_dz, rtol=1e-5, atol=2e-6 * grad_scale)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_matches_torch(rng, opts, soft):
    if soft and "ignore_index" in opts:
        pytest.skip("ignore_index applies to class targets only")
    z, t = make(rng, 37, 129, soft=soft, ignore_index=opts.get("ignore_index", -100))
    kw = kwargs_for(rng, 129, opts)
    tz = torch.from_numpy(z).double().requires_grad_()
    tt = torch.from_numpy(t).double() if soft else torch.from_numpy(t)
    tw = torch.from_numpy(kw["weight"]).double() if "weight" in kw else None
    tl = F.cross_entropy(tz, tt, weight=tw, ignore_index=kw.get("ignore_index", -100),
                         label_smoothing=kw.get("label_smoothing", 0.0), reduction=kw.get("reduction", "mean"))
    tl.backward(torch.ones_like(tl))
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True, **kw)
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-6, atol=loss_atol(z, lse, kw))
    g = np.ones(37) if kw.get("reduction") == "none" else 1.0
    dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse, g, **kw)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-5, atol=1e-6 * np.abs(tz.grad.numpy()).max())


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_backward_is_the_finite_difference_derivative(rng, soft):
    # Central differences of the float64 loss along random directions against <grad, direction>.
    z, t = make(rng, 6, 11, soft=soft)
    w = (rng.random(11) + 0.5).astype(np.float32)
    kw = {"weight": w, "label_smoothing": 0.2}
    _, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True, **kw)
    dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse, **kw)
    z64, h = z.astype(np.float64), 1e-5
    for _ in range(4):
        u = rng.standard_normal(z.shape)

        def f(x):
            b, v = x.shape
            logp = x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)
            wv = w.astype(np.float64)
            if soft:
                q = (0.8 * t + 0.2 / v) * wv
                return -(logp * q).sum() / b
            valid = t != -100
            tt = np.where(valid, t, 0)
            rows = 0.8 * -wv[tt] * logp[np.arange(b), tt] + 0.2 / v * -(logp * wv).sum(1)
            return np.where(valid, rows, 0.0).sum() / wv[tt][valid].sum()

        fd = (f(z64 + h * u) - f(z64 - h * u)) / (2 * h)
        np.testing.assert_allclose(np.vdot(dz.astype(np.float64), u), fd, rtol=1e-5, atol=1e-7)


def test_numerics_at_the_edges(isa):
    # Logits as large as +-1e4 stay finite and exact to float precision.
    z = np.array([[1e4, 1e4 - 1, -1e4], [-1e4, -1e4 + 2, -1e4 + 1]], np.float32)
    t = np.array([0, 1])
    for kw in ({}, {"label_smoothing": 0.1}):
        loss = kernels.cross_entropy.cross_entropy_fwd(z, t, **kw)
        assert np.isfinite(loss)
        np.testing.assert_allclose(loss, np_xent(z, t, eps=kw.get("label_smoothing", 0.0)), rtol=1e-6)
    # Masked (-inf) classes: probability 0, gradient 0, finite loss without smoothing.
    z = np.array([[1.0, -np.inf, 2.0, -np.inf], [0.5, 0.25, -np.inf, 1.0]], np.float32)
    t = np.array([2, 0])
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True)
    np.testing.assert_allclose(loss, np_xent(z, t), rtol=1e-6)
    dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse)
    assert dz[0, 1] == 0.0 and dz[0, 3] == 0.0 and dz[1, 2] == 0.0 and np.isfinite(dz).all()
    assert np.isinf(kernels.cross_entropy.cross_entropy_fwd(z, t, label_smoothing=0.1))  # as PyTorch: smoothing meets -inf
    # A NaN in a row makes the loss NaN; in an ignored row it is dropped with the row.
    zn = np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 2.0]], np.float32)
    assert np.isnan(kernels.cross_entropy.cross_entropy_fwd(zn, np.array([0, 2])))
    assert np.isnan(kernels.cross_entropy.cross_entropy_fwd(zn, np.array([0, 2]), reduction="none")[0])
    assert np.isfinite(kernels.cross_entropy.cross_entropy_fwd(zn, np.array([-100, 2])))
    # Every target ignored: NaN mean (0/0, as PyTorch), zero sum, zero gradient.
    t_all = np.array([-100, -100])
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(zn, t_all, return_lse=True)
    assert np.isnan(loss)
    assert kernels.cross_entropy.cross_entropy_fwd(zn, t_all, reduction="sum") == 0.0
    assert (kernels.cross_entropy.cross_entropy_bwd(zn, t_all, lse) == 0.0).all()


def test_backward_in_place(rng):
    z, t = make(rng, 9, 70)
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True)
    want = kernels.cross_entropy.cross_entropy_bwd(z, t, lse)
    buf = z.copy()
    got = kernels.cross_entropy.cross_entropy_bwd(buf, t, lse, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, want)


def test_empty_batch():
    z = np.zeros((0, 5), np.float32)
    t = np.zeros(0, np.int64)
    assert np.isnan(kernels.cross_entropy.cross_entropy_fwd(z, t))
    assert kernels.cross_entropy.cross_entropy_fwd(z, t, reduction="sum") == 0.0
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, reduction="none", return_lse=True)
    assert loss.shape == (0,) and lse.shape == (0,)
    assert kernels.cross_entropy.cross_entropy_bwd(z, t, lse).shape == (0, 5)


Z = np.zeros((3, 4), np.float32)
T = np.array([0, 3, 1])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "ref"])
@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((Z, np.array([0, 4, 1])), {}, ValueError, r"target\[1\] = 4 is neither a class in \[0, 4\) nor ignore_index"),
        ((Z, np.array([0, 1, -3])), {}, ValueError, r"target\[2\] = -3"),
        ((Z, T.astype(np.float32)), {}, TypeError, "target must be integer class indices"),
        ((Z.astype(np.float16), T), {}, TypeError, "logits must have dtype float32 or float64, got float16"),
        ((Z[0], T), {}, ValueError, r"logits must be 2-D \(batch, classes\)"),
        ((Z, T[:2]), {}, ValueError, r"target must have shape \(3,\)"),
        ((Z, np.zeros((3, 5), np.float32)), {}, ValueError, r"soft targets must have the logits' shape \(3, 4\)"),
        ((Z, np.zeros((3, 4))), {}, TypeError, "soft targets must have dtype float32"),
        ((Z, T), {"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
        ((Z, T), {"label_smoothing": -0.1}, ValueError, r"label_smoothing must be in \[0, 1\]"),
        ((Z, T), {"weight": np.ones(3, np.float32)}, ValueError, r"weight must have shape \(4,\)"),
        ((Z, T), {"weight": np.ones(4)}, TypeError, "weight must have dtype float32"),
        ((Z, T), {"reduction": "avg"}, ValueError, "reduction must be one of"),
        ((np.zeros((3, 0), np.float32), T), {}, ValueError, "logits must have at least one class"),
    ],
)
def test_bad_input(fast, args, kwargs, exc, match):
    fwd = kernels.cross_entropy.cross_entropy_fwd if fast else kernels.cross_entropy.cross_entropy_fwd_ref
    with pytest.raises(exc, match=match):
        fwd(*args, **kwargs)


def test_backward_bad_input():
    _, lse = kernels.cross_entropy.cross_entropy_fwd(Z, T, return_lse=True)
    with pytest.raises(TypeError, match="lse must have dtype float64"):
        kernels.cross_entropy.cross_entropy_bwd(Z, T, lse.astype(np.float32))
    with pytest.raises(ValueError, match=r"lse must be the forward's float64 log-sum-exps of shape \(3,\)"):
        kernels.cross_entropy.cross_entropy_bwd(Z, T, lse[:2])
    with pytest.raises(ValueError, match="grad_output must be a scalar with reduction='mean'"):
        kernels.cross_entropy.cross_entropy_bwd(Z, T, lse, np.ones(3))
    with pytest.raises(ValueError, match=r"grad_output must be a scalar or have shape \(3,\)"):
        kernels.cross_entropy.cross_entropy_bwd(Z, T, lse, np.ones(2), reduction="none")
    with pytest.raises(ValueError, match="out has shape"):
        kernels.cross_entropy.cross_entropy_bwd(Z, T, lse, out=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="out partly overlaps logits"):
        big = np.zeros((4, 4), np.float32)
        kernels.cross_entropy.cross_entropy_bwd(big[:3], T, lse, out=big[1:])


# --------------------------------------------------------------------------- fused linear + cross-entropy


def unfused_linear_xent(h, w, t, bias, g, **kw):
    """The composition the fused op must equal: logits, loss, dlogits, then three products."""
    z = kernels.gemm.gemm(h, w, trans_b=True, bias=bias)
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True, **kw)
    dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse, g, **kw)
    db = dz.sum(axis=0, dtype=np.float64).astype(np.float32) if bias is not None else None
    return loss, dz @ w, dz.T @ h, db


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("rows_per_chunk", [1, 7, 1000])
def test_linear_cross_entropy_matches_the_unfused_path(rng, opts, soft, rows_per_chunk):
    if soft and "ignore_index" in opts:
        pytest.skip("ignore_index applies to class targets only")
    b, d, v = 45, 23, 301
    h = rng.standard_normal((b, d), dtype=np.float32)
    w = (rng.standard_normal((v, d)) / 5).astype(np.float32)
    bias = rng.standard_normal(v, dtype=np.float32) if rows_per_chunk != 7 else None
    _, t = make(rng, b, v, soft=soft, ignore_index=opts.get("ignore_index", -100))
    kw = kwargs_for(rng, v, opts)
    g = np.linspace(0.5, 2.0, b) if kw.get("reduction") == "none" else 1.5
    want = unfused_linear_xent(h, w, t, bias, g, **kw)
    fused_kw = dict(kw)
    fused_kw["class_weight"] = fused_kw.pop("weight", None)
    got = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias, grad_output=g, chunk_bytes=4 * v * rows_per_chunk, **fused_kw)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-30)
    for name, x, y in zip(("d_hidden", "d_weight", "d_bias"), got[1:], want[1:]):
        if y is None:
            assert x is None, name
            continue
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * (np.abs(y).max() + 1e-30), err_msg=name)


@pytest.mark.parametrize("rows_per_chunk", [5, 1000])
def test_linear_cross_entropy_in_bf16_is_a_bf16_linear_then_the_loss(rng, rows_per_chunk):
    """bf16=True: the unfused path on hidden, weight and the logit gradient rounded to bf16
    (each chunk's, as a bf16 Linear's backward rounds its incoming gradient)."""
    import ml_dtypes

    def rounded(a):
        return a.astype(ml_dtypes.bfloat16).astype(np.float32)

    b, d, v = 12, 40, 37
    h = rng.standard_normal((b, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    bias = rng.standard_normal(v, dtype=np.float32)
    t = rng.integers(0, v, b)
    got = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias, chunk_bytes=4 * v * rows_per_chunk, bf16=True)
    z = rounded(h).astype(np.float64) @ rounded(w).T.astype(np.float64) + bias
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z.astype(np.float32), t, return_lse=True)
    dz = kernels.cross_entropy.cross_entropy_bwd(z.astype(np.float32), t, lse)
    np.testing.assert_allclose(got[0], loss, rtol=1e-5)
    np.testing.assert_allclose(got[1], rounded(dz) @ rounded(w), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[2], rounded(dz).T @ rounded(h), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[3], dz.sum(axis=0), rtol=1e-4, atol=1e-6)
    fp32 = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias)
    assert got[0] != fp32[0]


@pytest.mark.parametrize("gradients", [(), ("hidden",), ("weight", "bias"), ("bias",)], ids=str)
def test_linear_cross_entropy_computes_only_the_gradients_asked_for(rng, monkeypatch, gradients):
    b, d, v = 20, 7, 33
    h = rng.standard_normal((b, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    bias = rng.standard_normal(v, dtype=np.float32)
    t = rng.integers(0, v, b)
    full = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias, chunk_bytes=4 * v * 8)
    calls = []
    gemm = kernels.gemm.gemm
    monkeypatch.setattr(kernels.gemm, "gemm", lambda *a, **k: calls.append(1) or gemm(*a, **k))
    got = kernels.cross_entropy.linear_cross_entropy(h, w, t, bias, chunk_bytes=4 * v * 8, gradients=gradients)
    assert got[0] == full[0]
    for name, x, y in zip(("hidden", "weight", "bias"), got[1:], full[1:]):
        if name in gradients:
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert x is None, name
    # 3 chunks: the logits' GEMM each, and one more per chunk for each of d_hidden and d_weight
    assert len(calls) == 3 * (1 + ("hidden" in gradients) + ("weight" in gradients))


def test_linear_cross_entropy_bad_input(rng):
    h = np.zeros((4, 3), np.float32)
    w = np.zeros((5, 3), np.float32)
    t = np.array([0, 1, 2, 3])
    with pytest.raises(TypeError, match="hidden must have dtype float32"):
        kernels.cross_entropy.linear_cross_entropy(h.astype(np.float64), w, t)
    with pytest.raises(ValueError, match=r"weight must have shape \(classes, 3\)"):
        kernels.cross_entropy.linear_cross_entropy(h, np.zeros((5, 4), np.float32), t)
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        kernels.cross_entropy.linear_cross_entropy(h, w, t, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"target\[3\] = 7 is neither a class in \[0, 5\)"):
        kernels.cross_entropy.linear_cross_entropy(h, w, np.array([0, 1, 2, 7]), chunk_bytes=4 * 5)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        kernels.cross_entropy.linear_cross_entropy(h, w, t, label_smoothing=2.0)
    with pytest.raises(ValueError, match="chunk_bytes must be positive"):
        kernels.cross_entropy.linear_cross_entropy(h, w, t, chunk_bytes=0)
    with pytest.raises(ValueError, match="gradients must name some of 'hidden', 'weight' and 'bias'"):
        kernels.cross_entropy.linear_cross_entropy(h, w, t, gradients="hidden")
    with pytest.raises(ValueError, match="gradients must name some of"):
        kernels.cross_entropy.linear_cross_entropy(h, w, t, gradients=None)
