"""ember.nn.functional: activations by gradcheck, dropout's statistics, and the ops that run on
the native kernels (convolution, pooling, cross-entropy) checked by directional finite
differences in float32 and against PyTorch's autograd when it is installed."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck
from ember.kernels import attention, layer_norm

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


def test_float32_gradients_stay_float32_through_float64_ops_and_extremes():
    # A float64 factor or an extreme's tie weights must not hand a native backward float64 (PyTorch
    # casts each gradient to its input's dtype).
    x = ember.tensor(np.ones((1, 1, 3, 3), np.float32), requires_grad=True)
    w = ember.tensor(np.ones((1, 1, 2, 2), np.float32))
    (F.conv2d(x, w) * ember.tensor(np.array(2.0))).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.numpy().sum() == 32.0
    for reduce in (lambda y: y.amax(), lambda y: ember.maximum(y, ember.zeros(2, 3)).sum(),
                   lambda y: ember.minimum(y, ember.ones(2, 3)).sum()):
        a = ember.tensor(np.ones((2, 3), np.float32), requires_grad=True)
        reduce(F.gelu(a)).backward()  # GELU's backward is native: it refused float64
        assert a.grad.dtype == np.float32


def test_edge_cases_follow_pytorch():
    # Everything ignored: the mean is NaN, and the gradient 0 (it was NaN in column 0).
    x = ember.tensor(np.zeros((2, 3)), requires_grad=True)
    loss = F.nll_loss(x, [-100, -100])
    loss.backward()
    assert np.isnan(loss.item()) and not x.grad.numpy().any()
    # A standard deviation of equal values has gradient 0, not NaN.
    s = ember.tensor(np.ones(3), requires_grad=True)
    s.std().backward()
    np.testing.assert_array_equal(s.grad.numpy(), [0, 0, 0])
    # Softmax and logsumexp over an empty dim; reductions of a 0-d tensor over its one dim.
    assert F.softmax(ember.zeros(3, 0), 1).shape == (3, 0) and F.log_softmax(ember.zeros(0, 4), 0).shape == (0, 4)
    np.testing.assert_array_equal(ember.zeros(3, 0).logsumexp(1).numpy(), [-np.inf] * 3)
    scalar = ember.tensor(np.array(2.0), requires_grad=True)
    for reduce in (lambda t: t.sum(0), lambda t: t.mean(-1), lambda t: t.amax(0), lambda t: t.var(0, correction=0)):
        assert reduce(scalar).shape == ()
    scalar.sum(0).backward()
    assert scalar.grad.item() == 1.0
    with pytest.raises(IndexError, match="dim 1 is out of range for a tensor of 0 dimensions"):
        scalar.sum(1)
    # ReLU's gradient passes where its input is NaN, on NumPy's path and the kernel's.
    for n in (3, 300_000):
        r = ember.tensor(np.tile([np.nan, -1.0, 2.0], n // 3).astype(np.float32), requires_grad=True)
        F.relu(r).sum().backward()
        np.testing.assert_array_equal(r.grad.numpy()[:3], [1, 0, 1])
    # An empty batch leaves BatchNorm's statistics as they were (they became NaN).
    bn = ember.nn.BatchNorm1d(2)
    assert bn(ember.zeros(0, 2)).shape == (0, 2)
    assert bn.num_batches_tracked.item() == 0 and np.isfinite(bn.running_var.numpy()).all()
    if torch is not None:
        t = torch.ones(3, dtype=torch.float64, requires_grad=True)
        t.std().backward()
        np.testing.assert_array_equal(t.grad.numpy(), s.grad.numpy())
        np.testing.assert_array_equal(torch.zeros(3, 0).logsumexp(1).numpy(), [-np.inf] * 3)


def test_probability_targets_get_their_gradient(rng):
    z, p = rng.standard_normal((4, 3)), rng.dirichlet(np.ones(3), 4)
    weight = np.array([1.0, 2.0, 0.5])
    for reduction in ("mean", "sum", "none"):
        target = ember.tensor(p, requires_grad=True)
        loss = F.cross_entropy(ember.tensor(z, requires_grad=True), target, weight=weight, label_smoothing=0.1,
                               reduction=reduction)
        (loss if reduction != "none" else loss * ember.tensor(np.arange(1.0, 5.0))).sum().backward()
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        rows = {"mean": np.full((4, 1), 0.25), "sum": np.ones((4, 1)), "none": np.arange(1.0, 5.0)[:, None]}
        np.testing.assert_allclose(target.grad.numpy(), -0.9 * weight * log_p * rows[reduction], rtol=1e-12)
        if torch is not None:
            tt = torch.tensor(p, requires_grad=True)
            tl = TF.cross_entropy(torch.tensor(z), tt, weight=torch.tensor(weight), label_smoothing=0.1,
                                  reduction=reduction)
            (tl if reduction != "none" else tl * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
            np.testing.assert_allclose(target.grad.numpy(), tt.grad.numpy(), rtol=1e-12)


def test_functional_ops_name_what_is_wrong():
    for call, error, match in [
        (lambda: F.softmax(ember.ones(2, 2), 1.5), TypeError, "softmax: dim must be an int, got 1.5"),
        (lambda: F.log_softmax(ember.ones(2, 2), 2), IndexError, "log_softmax: dim 2 is out of range"),
        (lambda: F.softmax(np.ones(3), 0), TypeError, "softmax: input must be an ember Tensor, got ndarray"),
        (lambda: F.relu(np.ones(3)), TypeError, "ReLU: expected an ember Tensor among the inputs, got ndarray"),
        (lambda: F.max_pool2d(np.ones((1, 1, 4, 4)), 2), TypeError, "expected an ember Tensor"),
        (lambda: F.linear(ember.zeros(2, 5), ember.zeros(5)), ValueError, r"linear: weight must be \(out_features, "
                                                                          r"in_features\).*got weight \(5,\)"),
        (lambda: F.linear(ember.zeros(2, 5), ember.zeros(3, 5), ember.zeros(4)), ValueError,
         r"linear: bias must have shape \(3,\)"),
        (lambda: layer_norm.layer_norm_fwd(np.zeros((4, 5), np.float32), (5,), np.ones(3, np.float32)), ValueError,
         r"layer_norm: weight has shape \(3,\), not the normalized shape \(5,\)"),
        (lambda: attention.attention_qkv_fwd(np.zeros((1, 2, 6), np.float32), 0, scale=1.0), ValueError,
         "attention_qkv_fwd: heads must be >= 1, got 0"),
        (lambda: attention.attention_qkv_bwd([[0.0]], 1, None, np.zeros((1, 1, 2), np.float32), None, scale=1.0),
         TypeError, "qkv"),
    ]:
        with pytest.raises(error, match=match):
            call()
