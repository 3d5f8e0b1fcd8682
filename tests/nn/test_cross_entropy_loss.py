"""Cross-entropy as users call it — ``nn.functional.cross_entropy`` and ``nn.CrossEntropyLoss``
through autograd — against a float64 NumPy reference (no PyTorch needed), forward and backward,
with every option: class indices or probabilities, ``weight``, ``ignore_index`` (some rows,
a class used as the index, every row), ``label_smoothing`` and each ``reduction``, on every
ISA. The gradient's oracle is the reference's own central differences, so it does not share a
derivation with the code under test."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn

B, V = 7, 13
# One fixed tolerance for every case: float32 logits, float64 accumulation in the kernels.
RTOL, ATOL = 1e-5, 1e-6


def reference_rows(z, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """Per-row losses and the 'mean' denominator, float64, from the definition: the target
    distribution q (one-hot or given, mixed with the uniform one by label_smoothing), weighted
    per class, against log softmax(z)."""
    z = np.asarray(z, np.float64)
    b, v = z.shape
    w = np.ones(v) if weight is None else np.asarray(weight, np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    if target.ndim == 2:  # probabilities; 'mean' divides by the batch size
        q = (1 - label_smoothing) * target.astype(np.float64) + label_smoothing / v
        return -(w * q * logp).sum(axis=1), float(b)
    rows, denom = np.zeros(b), 0.0
    for i, t in enumerate(target):
        if t == ignore_index:
            continue
        q = np.full(v, label_smoothing / v)
        q[t] += 1 - label_smoothing
        rows[i] = -(w * q * logp[i]).sum()
        denom += w[t]  # PyTorch's weighted mean: over the targets' weights
    return rows, denom


def reference_loss(z, target, reduction="mean", **kwargs):
    rows, denom = reference_rows(z, target, **kwargs)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    with np.errstate(invalid="ignore"):
        return rows.sum() / denom


def reference_grad(z, target, upstream, reduction="mean", h=1e-6, **kwargs):
    """d <upstream, loss> / dz by central differences of the float64 reference."""
    z = np.asarray(z, np.float64)
    grad = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        plus = np.sum(upstream * reference_loss(z + e, target, reduction, **kwargs))
        minus = np.sum(upstream * reference_loss(z - e, target, reduction, **kwargs))
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def make_target(rng, kind, ignore_index):
    if kind == "probs":
        t = rng.random((B, V)).astype(np.float32)
        return t / t.sum(axis=1, keepdims=True)
    t = rng.integers(0, V, B)
    if kind == "some ignored":
        t[[1, 4]] = ignore_index
    elif kind == "all ignored":
        t[:] = ignore_index
    return t


CASES = [(kind, ii) for kind in ("classes", "some ignored") for ii in (-100, 3)] + [("all ignored", -100),
                                                                                     ("all ignored", 5),
                                                                                     ("probs", -100)]


def case_id(case):
    kind, ii = case
    return kind.replace(" ", "-") + ("" if ii == -100 else f"-ignore_index={ii}")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15, 1.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cross_entropy_forward_and_backward(isa, rng, case, weighted, label_smoothing, reduction):
    kind, ignore_index = case
    z = (rng.standard_normal((B, V)) * 2).astype(np.float32)
    target = make_target(rng, kind, ignore_index)
    if kind != "probs" and ignore_index == 3:  # a class used as the index: those rows drop out
        target[0] = 3
    weight = (rng.random(V) + 0.5).astype(np.float32) if weighted else None
    kwargs = {"weight": weight, "ignore_index": ignore_index, "label_smoothing": label_smoothing}
    x = ember.tensor(z, requires_grad=True)
    loss = F.cross_entropy(x, ember.tensor(target), reduction=reduction, **kwargs)
    want = reference_loss(z, target, reduction, **kwargs)
    assert loss.shape == np.shape(want)
    np.testing.assert_allclose(loss.detach().numpy(), want, rtol=RTOL, atol=ATOL)
    if kind == "all ignored":  # PyTorch's conventions: 0/0 for the mean, 0 for the sum
        assert np.isnan(loss.item()) if reduction == "mean" else not loss.detach().numpy().any()

    upstream = rng.uniform(0.5, 1.5, B) if reduction == "none" else rng.uniform(0.5, 1.5)
    loss.backward(ember.tensor(np.asarray(upstream, np.float32)))
    want_grad = reference_grad(z, target, upstream, reduction, **kwargs)
    if kind == "all ignored":
        want_grad = np.zeros_like(want_grad)  # no target, no gradient (not NaN)
    assert x.grad.shape == z.shape and x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_loss_module_and_target_types(rng, label_smoothing):
    # The module form, weights given as a Tensor, targets as a Tensor, an array or a list;
    # the loss composes with other ops and its gradient flows back through them.
    z = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    target = rng.integers(0, V, B)
    target[2] = -1
    weight = (rng.random(V) + 0.5).astype(np.float32)
    crit = nn.CrossEntropyLoss(weight=ember.tensor(weight), ignore_index=-1, label_smoothing=label_smoothing)
    kwargs = {"weight": weight, "ignore_index": -1, "label_smoothing": label_smoothing}
    want = reference_loss(z, target, **kwargs)
    for t in (ember.tensor(target), target, target.tolist()):
        x = ember.tensor(z, requires_grad=True)
        scaled = crit(x * 2.0, t) * 3.0
        np.testing.assert_allclose(scaled.item(), 3 * reference_loss(2 * z, target, **kwargs), rtol=RTOL)
        scaled.backward()
        want_grad = 6 * reference_grad(2 * z.astype(np.float64), target, 1.0, **kwargs)
        np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(crit(ember.tensor(z), target).item(), want, rtol=RTOL)


def test_the_reference_itself(rng):
    # The reference's own sanity: uniform logits give log(V); a perfectly sure, right row gives 0.
    z = np.zeros((2, V))
    np.testing.assert_allclose(reference_loss(z, np.array([0, 5])), np.log(V), rtol=1e-15)
    sure = np.full((1, V), -1e3)
    sure[0, 4] = 0.0
    assert reference_loss(sure, np.array([4])) == 0.0
    # Smoothing 1 is the mean of -log p over the classes, whatever the target.
    z = rng.standard_normal((3, V))
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(reference_loss(z, np.array([1, 2, 3]), label_smoothing=1.0), -logp.mean(), rtol=1e-12)


def test_linear_cross_entropy_makes_only_the_gradients_the_graph_needs(rng, monkeypatch):
    # F.linear_cross_entropy against cross_entropy(linear(...)): the same loss with and without
    # recording, the same gradients for whichever inputs require them, and under no_grad (an
    # evaluation) only the forward's GEMM.
    h = rng.standard_normal((9, 6)).astype(np.float32)
    w = rng.standard_normal((11, 6)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    t = rng.integers(0, 11, 9)
    for needs in [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]:
        fused = [ember.tensor(a, requires_grad=r) for a, r in zip((h, w, b), needs)]
        plain = [ember.tensor(a, requires_grad=r) for a, r in zip((h, w, b), needs)]
        loss = F.linear_cross_entropy(fused[0], fused[1], t, fused[2])
        want = F.cross_entropy(F.linear(*plain), t)
        np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-6)
        loss.backward(), want.backward()
        for x, y, r in zip(fused, plain, needs):
            if r:
                np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-5, atol=1e-6)
    calls = []
    gemm = ember.kernels.gemm.gemm
    monkeypatch.setattr(ember.kernels.gemm, "gemm", lambda *a, **k: calls.append(1) or gemm(*a, **k))
    params = [ember.tensor(a, requires_grad=True) for a in (h, w, b)]
    with ember.no_grad():
        loss = F.linear_cross_entropy(params[0], params[1], t, params[2])
    assert len(calls) == 1 and not loss.requires_grad
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-6)
