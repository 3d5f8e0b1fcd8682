"""Normalisation, embedding and loss layers, RMSprop, schedules and clipping without PyTorch:
gradcheck in float64, closed forms and NumPy references."""

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.autograd import gradcheck


def double(module):
    """``module`` with float64 parameters and statistics (the dtype of the inputs it then takes)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.dtype.kind == "f":
            t._data = t._data.astype(np.float64)
    return module


def test_norm_layers_gradcheck(device, rng):
    bn = double(nn.BatchNorm2d(3))
    x = ember.tensor(rng.standard_normal((4, 3, 2, 2)), dtype=np.float64, requires_grad=True)
    mix = ember.tensor(rng.standard_normal((4, 3, 2, 2)), dtype=np.float64)  # so the sum is not constant
    assert gradcheck(lambda t: (bn(t) * mix).sum(), [x])
    ln = double(nn.LayerNorm(5))
    y = ember.tensor(rng.standard_normal((3, 5)), dtype=np.float64, requires_grad=True)
    out = ln(y).detach().cpu().numpy()
    v = y.detach().cpu().numpy().var(1)
    np.testing.assert_allclose(out.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(out.var(1), v / (v + ln.eps), rtol=1e-9)  # eps keeps it just under 1
    assert gradcheck(lambda t: ln(t).exp().sum(), [y])


def test_losses_against_numpy(device, rng):
    z = rng.standard_normal((5, 4))
    t = np.array([1, 0, 3, 3, -100])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    got = nn.NLLLoss()(ember.tensor(logp, dtype=np.float64), ember.tensor(t)).item()
    np.testing.assert_allclose(got, -logp[np.arange(4), t[:4]].mean(), rtol=1e-12)
    x = rng.standard_normal((3, 2)) * 4
    y = (rng.random((3, 2)) > 0.5).astype(np.float64)
    want = np.mean(-(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x)))))
    got = nn.BCEWithLogitsLoss()(ember.tensor(x, dtype=np.float64), ember.tensor(y, dtype=np.float64)).item()
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_rmsprop_against_its_formula(device, rng):
    w0 = rng.standard_normal(4)
    p = nn.Parameter(ember.tensor(w0, dtype=np.float64))
    opt = ember.optim.RMSprop([p], lr=0.01, alpha=0.9)
    sq, w = np.zeros(4), w0.copy()
    for _ in range(3):
        g = rng.standard_normal(4)
        p.grad = ember.tensor(g, dtype=np.float64)
        opt.step()
        sq = 0.9 * sq + 0.1 * g * g
        w -= 0.01 * g / (np.sqrt(sq) + 1e-8)
    np.testing.assert_allclose(p.detach().cpu().numpy(), w, rtol=1e-12)
    with pytest.raises(ValueError, match="alpha in"):
        ember.optim.RMSprop([p], alpha=2.0)


def test_schedules_closed_forms(device):
    p = nn.Parameter(ember.zeros(1))
    opt = ember.optim.SGD([p], lr=1.0)
    s = ember.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for _ in range(5):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    np.testing.assert_allclose(lrs, [(1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)], atol=1e-12)
    state = s.state_dict()
    s2 = ember.optim.lr_scheduler.CosineAnnealingLR(ember.optim.SGD([p], lr=1.0), T_max=4)
    s2.load_state_dict(state)
    assert s2.last_epoch == s.last_epoch
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        ember.optim.lr_scheduler.StepLR(opt, 0)


def test_clip_grad_norm(device):
    p = nn.Parameter(ember.zeros(2))
    p.grad = ember.tensor([3.0, 4.0])
    norm = nn.utils.clip_grad_norm_([p], 1.0)
    assert norm.item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.cpu().numpy(), [0.6, 0.8], rtol=1e-5)
    p.grad = ember.tensor([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="total norm"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_layers_refuse_inputs_of_another_dtype_and_say_how_to_convert(rng):
    """PyTorch's rule, the same for Linear and Conv2d: no silent cast (Linear used to compute in
    float64 for a float64 input, Conv2d blamed its own weight)."""
    x8 = ember.tensor(rng.integers(0, 256, (2, 3, 5, 5)).astype(np.uint8))
    with pytest.raises(TypeError, match=r"Conv2d: input has dtype uint8 but the weights are float32; convert the "
                                        r"input with x.float\(\) / 255"):
        nn.Conv2d(3, 4, 3)(x8)
    for layer, x in ((nn.Conv2d(3, 4, 3), x8.double()), (nn.Linear(5, 2), ember.tensor(np.ones((2, 5))))):
        with pytest.raises(TypeError, match=rf"{type(layer).__name__}: input has dtype float64 .* with x.float\(\)"):
            layer(x)
        assert layer(x.float()).dtype == np.float32
