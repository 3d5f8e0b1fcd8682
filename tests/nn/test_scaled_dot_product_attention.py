"""nn.functional.scaled_dot_product_attention: PyTorch's values and gradients (causal, boolean
and additive masks that broadcast, grouped-query heads, any number of leading dimensions, odd
sizes, decoding one query against a cache), float64 gradient checks (dropout included), seeded
dropout, every device, and the errors bad arguments get."""

import numpy as np
import pytest

import ember
from ember import nn
from ember.autograd import gradcheck
from ember.autograd.fused import ScaledDotProductAttentionFn

F = nn.functional


def tensors(rng, *shapes, dtype=np.float32, requires_grad=True):
    return [ember.tensor(rng.standard_normal(s).astype(dtype), requires_grad=requires_grad) for s in shapes]


CASES = {  # query, key and value shapes, and the keyword arguments
    "causal": ((2, 3, 70, 16), (2, 3, 70, 16), (2, 3, 70, 16), {"is_causal": True}),
    "causal, more keys": ((1, 2, 9, 8), (1, 2, 13, 8), (1, 2, 13, 8), {"is_causal": True}),
    "no heads": ((5, 8), (7, 8), (7, 3), {}),
    "three leading dimensions": ((2, 3, 4, 5, 8), (2, 3, 4, 6, 8), (2, 3, 4, 6, 12), {"scale": 0.3}),
    "grouped heads": ((2, 8, 33, 16), (2, 2, 33, 16), (2, 2, 33, 16), {"enable_gqa": True, "is_causal": True}),
    "odd sizes": ((1, 3, 67, 7), (1, 3, 65, 7), (1, 3, 65, 9), {}),
    "no features": ((2, 2, 3, 0), (2, 2, 4, 0), (2, 2, 4, 5), {}),
    "no features, causal, a scale": ((2, 3, 0), (2, 4, 0), (2, 4, 5), {"is_causal": True, "scale": 2.0}),
    "no features at all": ((2, 3, 0), (2, 4, 0), (2, 4, 0), {}),
}


def test_no_features_attend_evenly(rng):
    # E = 0: every score is 0 (no division by sqrt(0)), so each query averages the values.
    q, k, v = tensors(rng, (2, 3, 0), (2, 4, 0), (2, 4, 5))
    out = F.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out.detach().numpy(), np.repeat(v.detach().numpy().mean(1, keepdims=True), 3, 1),
                               rtol=1e-6, atol=1e-7)
    out.sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), np.full((2, 4, 5), 3 / 4), rtol=1e-6)
    assert q.grad.shape == (2, 3, 0) and k.grad.shape == (2, 4, 0)
    empty = F.scaled_dot_product_attention(q, k, tensors(rng, (2, 4, 0))[0])
    assert empty.shape == (2, 3, 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_match_pytorch(rng, name):
    torch = pytest.importorskip("torch")
    qs, ks, vs, kw = CASES[name]
    q, k, v = tensors(rng, qs, ks, vs)
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(ember.tensor(g))
    tq, tk, tv = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **kw)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    for t, w in ((q, tq), (k, tk), (v, tv)):
        np.testing.assert_allclose(t.grad.numpy(), w.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["boolean", "additive"])
def test_masks_broadcast_as_in_pytorch(rng, kind):
    torch = pytest.importorskip("torch")
    q, k, v = tensors(rng, (2, 3, 5, 8), (2, 3, 6, 8), (2, 3, 6, 8))
    if kind == "boolean":
        mask = rng.random((5, 6)) < 0.6
        mask[2] = False  # query 2 sees no key: 0, as PyTorch
    else:
        mask = rng.standard_normal((3, 1, 6)).astype(np.float32)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=ember.tensor(mask))
    out.sum().backward()
    tq, tk, tv = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
    want.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    for t, w in ((q, tq), (k, tk), (v, tv)):
        np.testing.assert_allclose(t.grad.numpy(), w.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_decoding_one_query_against_a_cache_is_the_last_row_of_causal_attention(rng):
    q, k, v = tensors(rng, (2, 4, 12, 16), (2, 4, 12, 16), (2, 4, 12, 16), requires_grad=False)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    for t in range(12):  # query t against the keys cached so far
        step = F.scaled_dot_product_attention(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1]).numpy()
        np.testing.assert_allclose(step[:, :, 0], full[:, :, t], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw", [{"is_causal": True}, {"mask": True}, {"enable_gqa": True}],
                         ids=["causal", "mask", "grouped"])
def test_gradcheck(rng, kw):
    heads = 4 if kw.get("enable_gqa") else 2
    q, k, v = tensors(rng, (1, heads, 5, 3), (1, 2, 6, 3), (1, 2, 6, 2), dtype=np.float64)
    mask = None
    if kw.pop("mask", False):
        mask = ember.tensor(np.where(rng.random((5, 6)) < 0.3, -np.inf, rng.standard_normal((5, 6))))
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, **kw), (q, k, v))


def test_gradcheck_with_dropout(rng):
    q, k, v = tensors(rng, (1, 2, 5, 3), (1, 2, 6, 3), (1, 2, 6, 2), dtype=np.float64)

    def attend(a, b, c):  # one seed, so every evaluation drops the same weights
        return ScaledDotProductAttentionFn.apply(a, b, c, None, scale=0.5, is_causal=False, dropout_p=0.4, seed=99)

    assert gradcheck(attend, (q, k, v))


def test_dropout_follows_the_seed(rng):
    q, k, v = tensors(rng, (1, 2, 9, 8), (1, 2, 9, 8), (1, 2, 9, 8), requires_grad=False)
    ember.manual_seed(3)
    first = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    second = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    ember.manual_seed(3)
    np.testing.assert_array_equal(F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy(), first)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(F.scaled_dot_product_attention(q, k, v, dropout_p=0.0).numpy(),
                                  F.scaled_dot_product_attention(q, k, v).numpy())


def test_every_device(device, rng):
    q, k, v = (ember.tensor(rng.standard_normal((1, 2, 7, 8)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    mask = ember.tensor(rng.random((7, 7)) < 0.8)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    host = [ember.tensor(t.detach().to("cpu").numpy(), device="cpu", requires_grad=True) for t in (q, k, v)]
    want = F.scaled_dot_product_attention(*host, attn_mask=ember.tensor(mask.to("cpu").numpy(), device="cpu"))
    want.sum().backward()
    np.testing.assert_allclose(out.detach().to("cpu").numpy(), want.detach().numpy(), rtol=1e-6, atol=1e-6)
    for t, h in zip((q, k, v), host):
        np.testing.assert_allclose(t.grad.to("cpu").numpy(), h.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_named(rng):
    q, k, v = tensors(rng, (1, 4, 5, 8), (1, 2, 6, 8), (1, 2, 6, 8))
    with pytest.raises(ValueError, match=r"enable_gqa=True lets the query have a multiple of the key's heads"):
        F.scaled_dot_product_attention(q, k, v)
    with pytest.raises(ValueError, match=r"attn_mask and is_causal cannot both be set"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 6), bool), is_causal=True, enable_gqa=True)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 6\) does not broadcast to \(1, 4, 5, 6\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 6), bool), enable_gqa=True)
    with pytest.raises(TypeError, match=r"attn_mask must be boolean or have the query's dtype"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 6), np.int64), enable_gqa=True)
    with pytest.raises(ValueError, match=r"attn_mask takes no gradient"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=ember.tensor(np.zeros((5, 6), np.float32),
                                                                       requires_grad=True), enable_gqa=True)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.0, enable_gqa=True)
    with pytest.raises(ValueError, match=r"key has 4 features per head but query has 8"):
        F.scaled_dot_product_attention(q, k[..., :4], v, enable_gqa=True)
    with pytest.raises(ValueError, match=r"value of shape .* must match key"):
        F.scaled_dot_product_attention(q, k, v[:, :, :5], enable_gqa=True)
    with pytest.raises(ValueError, match=r"at least 2 dimensions"):
        F.scaled_dot_product_attention(q[0, 0, 0], k, v)
    with pytest.raises(TypeError, match=r"query must be a Tensor"):
        F.scaled_dot_product_attention(q.detach().numpy(), k, v)


def test_changing_the_output_or_the_mask_after_the_forward_cannot_move_the_gradient():
    rng = np.random.default_rng(0)
    q, k, v = (ember.tensor(rng.standard_normal((1, 2, 4, 8)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v)
    with ember.no_grad():
        out[...] = 0.0  # backward reads the output: PyTorch's error, not a wrong gradient
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.sum().backward()
    mask = np.zeros((4, 4), np.float32)
    loss = F.scaled_dot_product_attention(q, k, v, attn_mask=ember.from_numpy(mask)).sum()
    mask[...] = -1e9  # the caller's array, changed between forward and backward
    loss.backward()
    changed = q.grad.numpy().copy()
    q.grad = None
    F.scaled_dot_product_attention(q, k, v, attn_mask=ember.from_numpy(np.zeros((4, 4), np.float32))).sum().backward()
    np.testing.assert_array_equal(changed, q.grad.numpy())
