"""The attention kernels (ember.kernels.attention): the double reference against NumPy's
materialised softmax, every ISA's fast kernels against the reference (forward and backward,
causal, masks, grouped-query heads, odd sizes, several blocks, queries that see no key, dropout),
and the checks every argument gets."""

import numpy as np
import pytest

from ember import _C
from ember.kernels import attention

F32, F64 = np.float32, np.float64


def numpy_attention(q, k, v, mask=None, causal=False, scale=None):
    """out and the probabilities, from the whole score matrix (float64)."""
    q, k, v = (a.astype(F64) for a in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = (q @ np.swapaxes(k, -1, -2)) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        s = s + mask
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    m = s.max(-1, keepdims=True, initial=-np.inf)
    seen = np.isfinite(m)
    e = np.exp(s - np.where(seen, m, 0))
    p = np.where(seen, e / np.where(seen, e.sum(-1, keepdims=True), 1), 0)
    return p @ v, p


def numpy_attention_grads(q, k, v, g, mask=None, causal=False):
    """dq, dk, dv from the materialised probabilities (float64)."""
    group = q.shape[1] // k.shape[1]
    _, p = numpy_attention(q, k, v, mask, causal)
    kr, vr = (np.repeat(a.astype(F64), group, axis=1) for a in (k, v))
    g = g.astype(F64)
    scale = 1 / np.sqrt(q.shape[-1])
    dv = np.swapaxes(p, -1, -2) @ g
    dp = g @ np.swapaxes(vr, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    dq = ds @ kr
    dk = np.swapaxes(ds, -1, -2) @ q.astype(F64)

    def fold(a):  # the heads of a group summed into their kv head
        b, h, t, e = a.shape
        return a.reshape(b, h // group, group, t, e).sum(2)

    return dq, fold(dk), fold(dv)


def operands(rng, b, h, hkv, tq, tk, d, dv, dtype=F32):
    return (rng.standard_normal((b, h, tq, d)).astype(dtype), rng.standard_normal((b, hkv, tk, d)).astype(dtype),
            rng.standard_normal((b, hkv, tk, dv)).astype(dtype))


CASES = {  # (batch, heads, kv heads, Tq, Tk, head size, value size)
    "one block": (2, 3, 3, 9, 11, 8, 8),
    "several blocks": (1, 2, 2, 150, 131, 16, 16),
    "odd head sizes": (2, 2, 2, 33, 47, 7, 5),
    "grouped heads": (1, 6, 2, 70, 70, 24, 40),
    "wide heads": (1, 1, 1, 65, 66, 80, 72),
    "decoding": (2, 4, 4, 1, 37, 16, 16),
    "no keys": (1, 2, 2, 5, 0, 8, 8),
}


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_the_materialised_softmax(rng, case, causal):
    q, k, v = operands(rng, *CASES[case], dtype=F64)
    out, lse = attention.attention_fwd(q, k, v, scale=1 / np.sqrt(q.shape[-1]), is_causal=causal)
    want, _ = numpy_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    got = attention.attention_bwd(q, k, v, out, g, lse, scale=1 / np.sqrt(q.shape[-1]), is_causal=causal)
    for a, b in zip(got, numpy_attention_grads(q, k, v, g, causal=causal)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def fast_and_reference(q, k, v, g, mask=None, **kw):
    """(fast outputs, reference outputs): out, lse, dq, dk, dv of each, the reference in float64."""
    kw.setdefault("scale", 1 / np.sqrt(q.shape[-1]))
    out, lse = attention.attention_fwd(q, k, v, mask, **kw)
    fast = (out, lse, *attention.attention_bwd(q, k, v, out, g, lse, mask, **kw))
    q64, k64, v64, g64 = (a.astype(F64) for a in (q, k, v, g))
    rout, rlse = attention.attention_fwd(q64, k64, v64, mask, **kw)
    return fast, (rout, rlse, *attention.attention_bwd(q64, k64, v64, rout, g64, rlse, mask, **kw))


def assert_close(fast, ref):
    for name, a, b in zip(("out", "lse", "dq", "dk", "dv"), fast, ref):
        assert a.dtype == F32 and a.shape == b.shape, name
        finite = np.isfinite(b)
        np.testing.assert_array_equal(np.isfinite(a), finite, err_msg=name)
        scale = max(1.0, float(np.abs(b[finite]).max())) if finite.any() else 1.0
        np.testing.assert_allclose(a[finite], b[finite], rtol=0, atol=2e-5 * scale, err_msg=name)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_kernels_match_the_reference(isa, rng, case, causal):
    q, k, v = operands(rng, *CASES[case])
    g = rng.standard_normal(q.shape[:3] + (v.shape[3],)).astype(F32)
    assert_close(*fast_and_reference(q, k, v, g, is_causal=causal))


def test_masks_broadcast_in_place_and_hide_whole_rows(isa, rng):
    b, h, tq, tk = 2, 3, 70, 83
    q, k, v = operands(rng, b, h, h, tq, tk, 16, 16)
    g = rng.standard_normal(q.shape).astype(F32)
    bias = rng.standard_normal((1, 1, 1, tk)).astype(F32)  # one bias per key
    hidden = rng.random((b, 1, tq, tk)) < 0.3
    hidden[0, 0, 5] = True  # query 5 of image 0 sees no key: out 0, no gradient
    mask = np.broadcast_to(np.where(hidden, -np.inf, bias).astype(F32), (b, h, tq, tk))
    assert mask.strides[1] == 0  # one mask for every head, read in place
    fast, ref = fast_and_reference(q, k, v, g, mask)
    assert_close(fast, ref)
    out, lse, dq = fast[:3]
    assert np.all(out[0, :, 5] == 0) and np.all(np.isneginf(lse[0, :, 5])) and np.all(dq[0, :, 5] == 0)
    want, _ = numpy_attention(q, k, v, mask)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-5)


def test_dropout_is_the_same_in_both_directions_and_unbiased(isa, rng):
    q, k, v = operands(rng, 1, 2, 1, 40, 70, 16, 16)
    g = rng.standard_normal(q.shape).astype(F32)
    fast, ref = fast_and_reference(q, k, v, g, dropout_p=0.25, seed=12345)
    assert_close(fast, ref)
    kw = {"scale": 0.25, "dropout_p": 0.25}
    first = attention.attention_fwd(q, k, v, seed=7, **kw)[0]
    np.testing.assert_array_equal(attention.attention_fwd(q, k, v, seed=7, **kw)[0], first)
    assert not np.array_equal(attention.attention_fwd(q, k, v, seed=8, **kw)[0], first)
    mean = np.mean([attention.attention_fwd(q, k, v, seed=s, **kw)[0] for s in range(300)], axis=0)
    plain = attention.attention_fwd(q, k, v, scale=0.25)[0]
    assert np.abs(mean - plain).mean() < 0.05 * np.abs(plain).mean()


def test_nan_propagates(rng):
    q, k, v = operands(rng, 1, 1, 1, 70, 70, 8, 8)
    k[0, 0, 3, 2] = np.nan
    out, _ = attention.attention_fwd(q, k, v, scale=0.5)
    assert np.isnan(out).all()  # every query's row meets key 3
    out, _ = attention.attention_fwd(q, k, v, scale=0.5, is_causal=True)
    assert np.isfinite(out[0, 0, :3]).all() and np.isnan(out[0, 0, 3:]).all()


def test_arguments_are_checked(rng):
    q, k, v = operands(rng, 1, 4, 2, 5, 6, 8, 8)
    kw = {"scale": 0.5}
    with pytest.raises(ValueError, match=r"query must be 4-D \(batch, heads, length, head size\), got shape \(4, 5, 8\)"):
        attention.attention_fwd(q[0], k, v, **kw)
    with pytest.raises(TypeError, match=r"key has dtype float64 but query has dtype float32"):
        attention.attention_fwd(q, k.astype(F64), v, **kw)
    with pytest.raises(ValueError, match=r"query's 4 heads must be a multiple of key's 3"):
        attention.attention_fwd(q, rng.standard_normal((1, 3, 6, 8)).astype(F32),
                                rng.standard_normal((1, 3, 6, 8)).astype(F32), **kw)
    with pytest.raises(ValueError, match=r"value has shape \(1, 2, 7, 8\) but key has shape \(1, 2, 6, 8\)"):
        attention.attention_fwd(q, k, np.zeros((1, 2, 7, 8), F32), **kw)
    with pytest.raises(ValueError, match=r"key has shape .* batch and head size must agree"):
        attention.attention_fwd(q, k[..., :4].copy(), v, **kw)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got 1"):
        attention.attention_fwd(q, k, v, dropout_p=1.0, **kw)
    with pytest.raises(ValueError, match=r"scale must be finite"):
        attention.attention_fwd(q, k, v, scale=float("inf"))
    with pytest.raises(ValueError, match=r"seed must be an int"):
        attention.attention_fwd(q, k, v, seed=-1, **kw)
    mask = np.zeros((1, 4, 5, 6), F32)
    with pytest.raises(ValueError, match=r"attn_mask and is_causal cannot both be set"):
        attention.attention_fwd(q, k, v, mask, is_causal=True, **kw)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(1, 4, 5, 6\)|attn_mask has shape"):
        attention.attention_fwd(q, k, v, mask[:, :, :4], **kw)
    with pytest.raises(TypeError, match=r"attn_mask"):
        attention.attention_fwd(q, k, v, mask.astype(F64), **kw)
    # outputs inside the mask: it would be overwritten while it is read
    o, lse = np.empty((1, 4, 5, 8), F32), np.empty((1, 4, 5), F32)
    inside = o.reshape(-1)[:120].reshape(1, 4, 5, 6)
    with pytest.raises(ValueError, match=r"out must not share memory with attn_mask"):
        _C.attention_fwd(q, k, v, inside, o, lse, 0.5, False, 0.0, 0)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    with pytest.raises(ValueError, match=r"out_query must not share memory with attn_mask"):
        _C.attention_bwd_ref(q, k, v, np.ones_like(q), dq.reshape(-1)[:120].reshape(1, 4, 5, 6), dq, dk, dv, 0.5,
                             False, 0.0, 0)
    out, lse = attention.attention_fwd(q, k, v, **kw)
    g = np.ones_like(out)
    with pytest.raises(ValueError, match=r"lse must have shape \(1, 4, 5\)|lse has shape"):
        attention.attention_bwd(q, k, v, out, g, lse[:, :, :4].copy(), **kw)
    with pytest.raises(ValueError, match=r"grad_out"):
        _C.attention_bwd(q, k, v, out, g[:, :2].copy(), lse, None, np.empty_like(q), np.empty_like(k),
                         np.empty_like(v), 0.5, False, 0.0, 0)
    memory = np.empty(q.size, F32)
    dq, dk = memory.reshape(q.shape), memory[:k.size].reshape(k.shape)
    with pytest.raises(ValueError, match=r"overlap|share memory"):
        _C.attention_bwd(q, k, v, out, g, lse, None, dq, dk, np.empty_like(v), 0.5, False, 0.0, 0)
    with pytest.raises(ValueError, match=r"overlap|share memory"):
        _C.attention_fwd(q, k, v, None, q[..., :8], lse, 0.5, False, 0.0, 0)


@pytest.mark.parametrize("heads, t, d", [(3, 70, 16), (2, 129, 24), (4, 1, 8)])
@pytest.mark.parametrize("options", ["causal", "mask", "dropout"])
def test_self_attention_from_the_stacked_projection(isa, rng, heads, t, d, options):
    """attention_qkv_fwd/bwd read query, key and value in place from one (N, T, 3E) array and
    write (N, T, E) and (N, T, 3E): bit for bit what the kernels give on the parts split out,
    transposed and made contiguous."""
    n, e = 2, heads * d
    qkv = rng.standard_normal((n, t, 3 * e)).astype(F32)
    g = rng.standard_normal((n, t, e)).astype(F32)
    kw = {"scale": 1 / np.sqrt(d), "is_causal": options == "causal", "dropout_p": 0.2 if options == "dropout" else 0.0,
          "seed": 7}
    mask = None
    if options == "mask":
        mask = np.broadcast_to(np.where(rng.random((n, 1, t, t)) < 0.2, -np.inf, 0.5).astype(F32), (n, heads, t, t))
    out, lse = attention.attention_qkv_fwd(qkv, heads, mask, **kw)
    dqkv = attention.attention_qkv_bwd(qkv, heads, out, g, lse, mask, **kw)
    q, k, v = (np.ascontiguousarray(a.reshape(n, t, heads, d).transpose(0, 2, 1, 3)) for a in np.split(qkv, 3, -1))
    want, want_lse = attention.attention_fwd(q, k, v, mask, **kw)
    gh = np.ascontiguousarray(g.reshape(n, t, heads, d).transpose(0, 2, 1, 3))
    grads = attention.attention_bwd(q, k, v, want, gh, want_lse, mask, **kw)
    np.testing.assert_array_equal(out, want.transpose(0, 2, 1, 3).reshape(n, t, e))
    np.testing.assert_array_equal(lse, want_lse)
    np.testing.assert_array_equal(dqkv, np.concatenate([a.transpose(0, 2, 1, 3).reshape(n, t, e) for a in grads], -1))


def test_self_attention_arguments_are_checked(rng):
    qkv = rng.standard_normal((2, 5, 24)).astype(F32)
    out, lse = np.empty((2, 5, 8), F32), np.empty((2, 2, 5), F32)
    with pytest.raises(ValueError, match=r"qkv's last dimension \(24\) must be 3 x heads x head size, with heads = 3"):
        _C.attention_qkv_fwd(qkv, 3, None, out, lse, 1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match=r"out has shape \(2, 5, 6\)"):
        _C.attention_qkv_fwd(qkv, 2, None, np.empty((2, 5, 6), F32), lse, 1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match=r"out must not share memory with qkv"):
        _C.attention_qkv_fwd(qkv, 2, None, qkv.reshape(-1)[:80].reshape(2, 5, 8), lse, 1.0, False, 0.0, 0)
    with pytest.raises(TypeError, match=r"qkv must have dtype float32"):
        _C.attention_qkv_fwd(qkv.astype(F64), 2, None, out, lse, 1.0, False, 0.0, 0)
    _C.attention_qkv_fwd(qkv, 2, None, out, lse, 1.0, False, 0.0, 0)
    with pytest.raises(ValueError, match=r"out_qkv must not share memory with qkv"):
        _C.attention_qkv_bwd(qkv, 2, out, out.copy(), lse, None, qkv, 1.0, False, 0.0, 0)
