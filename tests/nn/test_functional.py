"""ember.nn.functional: activations by gradcheck, dropout's statistics, and the ops that run on
the native kernels (convolution, pooling, cross-entropy) checked by directional finite
differences in float32 and against PyTorch's autograd when it is installed."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # optional reference
    torch = None


@pytest.mark.parametrize("fn, ref", [
    (F.gelu, lambda a: a * 0.5 * (1 + np.vectorize(__import__("math").erf)(a / np.sqrt(2)))),
    (F.silu, lambda a: a / (1 + np.exp(-a))),
    (lambda x: F.leaky_relu(x, 0.2), lambda a: np.where(a > 0, a, 0.2 * a)),
    (F.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
    (F.tanh, np.tanh),
    (lambda x: F.softmax(x, dim=-1), lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
    (lambda x: F.log_softmax(x, dim=1), lambda a: a - np.log(np.exp(a).sum(1, keepdims=True))),
], ids=["gelu", "silu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activations(device, rng, fn, ref):
    a = rng.standard_normal((3, 5))
    a = np.where(np.abs(a) < 0.05, 0.3, a)  # away from leaky_relu's kink
    x = ember.tensor(a, dtype=np.float64, requires_grad=True)
    np.testing.assert_allclose(fn(x).detach().cpu().numpy(), ref(a), rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, [x])


def test_dropout(device):
    x = ember.ones(200, 300, requires_grad=True)
    g = ember.Generator(7)
    y = F.dropout(x, 0.25, generator=g)
    kept = y.detach().cpu().numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y.detach().cpu().numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), y.detach().cpu().numpy())  # the same mask and scale
    again = F.dropout(ember.ones(200, 300), 0.25, generator=ember.Generator(7)).cpu().numpy()
    np.testing.assert_array_equal(again, y.detach().cpu().numpy())  # a seeded generator repeats
    assert F.dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        F.dropout(x, 1.5)


def directional_check(fn, inputs, rng, eps=1e-2, rtol=2e-2):
    """float32 version of gradcheck: <grad, u> against a central difference along u."""
    out = fn(*inputs)
    seed = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(ember.tensor(seed))
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            continue
        u = rng.standard_normal(x.shape).astype(np.float32)
        base = x.detach().cpu().numpy().copy()
        values = []
        for sign in (1, -1):
            x.detach()[...] = base + sign * eps * u
            with ember.no_grad():
                values.append(float(np.vdot(seed, fn(*inputs).cpu().numpy().astype(np.float64))))
        x.detach()[...] = base
        fd = (values[0] - values[1]) / (2 * eps)
        an = float(np.vdot(x.grad.cpu().numpy().astype(np.float64), u))
        assert abs(an - fd) <= rtol * (abs(fd) + 1.0), f"input {i}: backward {an}, finite differences {fd}"


def test_native_ops_match_finite_differences(device, rng):
    x = ember.tensor(rng.standard_normal((2, 3, 9, 9), dtype=np.float32), requires_grad=True)
    w = ember.tensor((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), requires_grad=True)
    b = ember.tensor(rng.standard_normal(4, dtype=np.float32), requires_grad=True)
    t = ember.tensor([3, 17])
    directional_check(lambda x, w, b: F.conv2d(x, w, b, padding=1, stride=(1, 2)), [x, w, b], rng)
    for p in (x, w, b):
        p.grad = None
    directional_check(lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), [x], rng)
    x.grad = None
    directional_check(lambda x: F.adaptive_avg_pool2d(x, 1), [x], rng)
    x.grad = None
    directional_check(lambda x, w: F.cross_entropy(F.conv2d(x, w).flatten(1)[:, :20], t, label_smoothing=0.1),
                      [x, w], rng)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_native_ops_match_torch(device, rng):
    xs = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    ws = (rng.standard_normal((5, 3, 3, 3)) * 0.3).astype(np.float32)
    bs = rng.standard_normal(5).astype(np.float32)
    ts = np.array([4, 1])
    x, w, b = (ember.tensor(a, requires_grad=True) for a in (xs, ws, bs))
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (xs, ws, bs))

    def net(F_, x, w, b, t):
        y = F_.max_pool2d(F_.relu(F_.conv2d(x, w, b, padding=1)), 2)
        y = F_.avg_pool2d(y, 2, 1)
        return F_.cross_entropy(F_.adaptive_avg_pool2d(y, 1).flatten(1), t, label_smoothing=0.05)

    loss = net(F, x, w, b, ember.tensor(ts))
    tloss = net(TF, tx, tw, tb, torch.from_numpy(ts))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    for mine, theirs in ((x, tx), (w, tw), (b, tb)):
        np.testing.assert_allclose(mine.grad.cpu().numpy(), theirs.grad.cpu().numpy(), rtol=1e-4, atol=1e-6)


def test_nll_and_bce_with_logits_check_their_targets():
    """PyTorch's rules: a class index outside [0, classes) that is not ignore_index is an error
    (never read from the other end of the row), and BCE's target has the input's shape (never
    broadcast into a grid)."""
    log_probs = F.log_softmax(ember.randn(4, 5), 1)
    for target, match in [([0, -1, 1, 1], r"target\[1\] = -1 is neither a class in \[0, 5\)"),
                          ([0, 5, 1, 1], r"target\[1\] = 5 is neither a class")]:
        with pytest.raises(ValueError, match=match):
            F.nll_loss(log_probs, ember.tensor(target))
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"):
        F.nll_loss(log_probs, ember.tensor([0, 1, 2, 3]), weight=np.ones(3, np.float32))
    kept = F.nll_loss(log_probs, ember.tensor([0, -100, 1, 1]))  # ignore_index rows count for nothing
    lp = log_probs.numpy()
    np.testing.assert_allclose(kept.item(), -(lp[0, 0] + lp[2, 1] + lp[3, 1]) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match=r"target has shape \(4,\) but input has \(4, 1\)"):
        F.binary_cross_entropy_with_logits(ember.randn(4, 1), ember.ones(4))
