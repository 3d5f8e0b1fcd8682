"""nn.MultiheadAttention's self-attention straight from its stacked projection (the fused
kernels reading query, key and value in place) against the same layer through the split,
transposed heads: the same outputs and gradients in every layout, with masks, causality and
dropout, in training and evaluation."""

import numpy as np
import pytest

import ember
from ember import nn
from ember.kernels import attention


def run(layer, x, monkeypatch, fused, **kw):
    with monkeypatch.context() as m:
        if not fused:
            m.setattr(attention, "has_qkv_kernels", lambda qkv: False)
            m.setattr(nn.functional, "has_qkv_kernels", lambda qkv: False)
        ember.manual_seed(5)  # the same dropout draw on both paths
        layer.zero_grad()
        xt = ember.tensor(x, requires_grad=True)
        out = layer(xt, xt, xt, need_weights=False, **kw)[0]
        (out * ember.tensor(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(out.shape))).sum().backward()
        return out.detach().numpy(), xt.grad.numpy(), {n: p.grad.numpy().copy() for n, p in layer.named_parameters()}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("options", ["plain", "causal", "padding", "attn_mask", "dropout"])
def test_the_fused_path_equals_the_split_heads(rng, monkeypatch, batch_first, options):
    ember.manual_seed(0)
    layer = nn.MultiheadAttention(24, 3, dropout=0.3 if options == "dropout" else 0.0, batch_first=batch_first)
    n, t = 2, 11
    x = rng.standard_normal((n, t, 24) if batch_first else (t, n, 24)).astype(np.float32)
    kw = {}
    if options == "causal":
        kw = {"is_causal": True}
    elif options == "padding":
        pad = np.zeros((n, t), bool)
        pad[1, -3:] = True
        kw = {"key_padding_mask": pad}
    elif options == "attn_mask":
        kw = {"attn_mask": rng.standard_normal((t, t)).astype(np.float32)}
    calls = []
    real = attention.attention_qkv_fwd
    monkeypatch.setattr(attention, "attention_qkv_fwd", lambda *a, **k: calls.append(1) or real(*a, **k))
    fused = run(layer, x, monkeypatch, True, **kw)
    assert calls, "the fused path did not run"
    split = run(layer, x, monkeypatch, False, **kw)
    for a, b in zip(fused[:2], split[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in fused[2]:
        np.testing.assert_allclose(fused[2][name], split[2][name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_cross_attention_and_weights_keep_the_split_path(rng):
    layer = nn.MultiheadAttention(16, 2, batch_first=True)
    x = ember.tensor(rng.standard_normal((2, 5, 16)).astype(np.float32))
    m = ember.tensor(rng.standard_normal((2, 7, 16)).astype(np.float32))
    with ember.no_grad():
        out, weights = layer(x, m, m)
        assert out.shape == (2, 5, 16) and weights.shape == (2, 5, 7)
        out, weights = layer(x, x, x)  # need_weights=True: the weights are built, so the heads are split
    assert weights.shape == (2, 5, 5)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1, rtol=1e-5)
