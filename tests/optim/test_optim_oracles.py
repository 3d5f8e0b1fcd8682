"""Optimizers against their closed forms, written out here in float64 NumPy (no PyTorch needed):
Adam, AdamW, SGD and RMSprop with every option, step by step from step 1, for float32 parameters
(Ember's fused native step) and float64 ones (its NumPy path); the first step's closed form
(Adam moves each weight by lr·sign(g)); state_dict round trips that continue exactly; parameter
groups; the optimizer protocol's smaller corners."""

import math

import numpy as np
import pytest

import ember
from ember import nn

STEPS = 6


# --------------------------------------------------------------------------- the closed forms


def adam_oracle(p0, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                decoupled=False):
    """Adam (decoupled=False, L2 weight decay) or AdamW, PyTorch's formulas in float64:
    the parameter after each step."""
    b1, b2 = betas
    p = p0.astype(np.float64)
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    trajectory = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        g = -g if maximize else g
        if weight_decay and decoupled:
            p = p * (1.0 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1.0 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1.0 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append(p)
    return trajectory


def sgd_oracle(p0, grads, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    """SGD, PyTorch's formulas in float64 (the first step's buffer is the gradient itself,
    undamped)."""
    p = p0.astype(np.float64)
    buf = None
    trajectory = []
    for g in grads:
        d = g.astype(np.float64)
        d = -d if maximize else d
        if weight_decay:
            d = d + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1.0 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        trajectory.append(p)
    return trajectory


def rmsprop_oracle(p0, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                   maximize=False):
    """RMSprop, PyTorch's formulas in float64."""
    p = p0.astype(np.float64)
    sq, mean, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    trajectory = []
    for g in grads:
        d = g.astype(np.float64)
        d = -d if maximize else d
        if weight_decay:
            d = d + weight_decay * p
        sq = alpha * sq + (1.0 - alpha) * d * d
        if centered:
            mean = alpha * mean + (1.0 - alpha) * d
            avg = np.sqrt(sq - mean * mean) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum:
            buf = momentum * buf + d / avg
            p = p - lr * buf
        else:
            p = p - lr * d / avg
        trajectory.append(p)
    return trajectory


def adamw_oracle(p0, grads, weight_decay=1e-2, **kwargs):
    """AdamW: decoupled weight decay, 0.01 by default (PyTorch's)."""
    return adam_oracle(p0, grads, weight_decay=weight_decay, decoupled=True, **kwargs)


ORACLES = {"Adam": adam_oracle, "AdamW": adamw_oracle, "SGD": sgd_oracle, "RMSprop": rmsprop_oracle}

CONFIGS = [
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.05, "amsgrad": True, "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.0}),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "betas": (0.7, 0.9)}),
    ("AdamW", {"lr": 0.01, "maximize": True, "weight_decay": 0.2}),
    ("AdamW", {"lr": 0.03, "weight_decay": 0.05, "amsgrad": True, "maximize": True}),
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.2, "weight_decay": 0.05, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.02, "maximize": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "maximize": True}),
    ("RMSprop", {"lr": 0.005, "alpha": 0.95, "momentum": 0.5, "centered": True, "weight_decay": 0.05,
                 "maximize": True}),
]


def config_id(config):
    name, kwargs = config
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def gradients(rng, shape, n):
    # Bounded away from zero, so that eps is negligible and sign(g) is well defined.
    return [(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 3.0, shape)).astype(np.float32) for _ in range(n)]


def run(name, kwargs, p0, grads, dtype):
    """Ember's parameter after each step."""
    p = nn.Parameter(ember.tensor(p0.astype(dtype)))
    opt = getattr(ember.optim, name)([p], **kwargs)
    trajectory = []
    for g in grads:
        p.grad = ember.tensor(g.astype(dtype))
        opt.step()
        trajectory.append(p.detach().numpy().astype(np.float64))
    return trajectory


# Tolerances: float64 runs the same formulas in another order (a few roundings of 1e-16);
# float32 rounds the parameter, the moments and the update at every step, each rounding at the
# parameter's size at that step -- so the error grows with the distance travelled, which a
# parameter that swings out and back to near zero makes large next to its final value.
TOLERANCES = {np.float64: {"rtol": 1e-12, "atol": 1e-14}, np.float32: {"rtol": 2e-6, "atol": 2e-7}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_every_step_matches_the_closed_form(rng, config, dtype):
    name, kwargs = config
    p0 = rng.standard_normal((5, 37)).astype(np.float32)  # an odd size: the native loops' tails
    grads = gradients(rng, p0.shape, STEPS)
    got = run(name, kwargs, p0, grads, dtype)
    want = ORACLES[name](p0, grads, **kwargs)
    travelled = np.zeros(p0.shape)  # each step rounds at the parameter's size then: the sum of |p| so far
    for step, (g, w) in enumerate(zip(got, want), start=1):
        travelled += np.abs(w)
        tol = TOLERANCES[dtype]
        bound = tol["atol"] + tol["rtol"] * np.abs(w) + 2 * np.finfo(dtype).eps * travelled
        bad = np.abs(g - w) > bound
        assert not bad.any(), (f"{name} {kwargs}, step {step}: {int(bad.sum())} elements off, first at "
                               f"{np.argwhere(bad)[0].tolist()}: {g[bad][0]} vs {w[bad][0]}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adams_first_step_is_lr_times_the_sign_of_the_gradient(rng, name, maximize, dtype):
    # Bias correction makes step 1 exactly lr·g/(|g| + eps): every weight moves by lr, against
    # the gradient (with it when maximizing), whatever the gradient's size or the betas.
    lr, wd = 0.1, (0.05 if name == "AdamW" else 0.0)
    p0 = rng.standard_normal(1001).astype(np.float32)
    g = gradients(rng, p0.shape, 1)[0] * rng.choice([1e-3, 1.0, 1e3], p0.shape).astype(np.float32)
    p = nn.Parameter(ember.tensor(p0.astype(dtype)))
    opt = getattr(ember.optim, name)([p], lr=lr, betas=(0.5, 0.75), weight_decay=wd, maximize=maximize)
    p.grad = ember.tensor(g.astype(dtype))
    opt.step()
    moved = (p0.astype(np.float64) * (1 - lr * wd) - p.detach().numpy()) / lr
    sign = -np.sign(g) if maximize else np.sign(g)
    np.testing.assert_allclose(moved, sign * np.abs(g) / (np.abs(g) + 1e-8), rtol=1e-5, atol=1e-5)
    assert opt.state[id(p)]["step"] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_first_steps_of_sgd_and_rmsprop(rng, dtype):
    p0 = rng.standard_normal(333).astype(np.float32)
    g = gradients(rng, p0.shape, 1)[0]
    g64 = g.astype(np.float64)
    cases = [
        # SGD's first momentum buffer is the gradient itself: no dampening on step 1.
        ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}, p0 - 0.1 * g64),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, p0 - 0.1 * 1.9 * g64),
        # RMSprop: square_avg = (1 - alpha) g², so the step is lr·sign(g)/sqrt(1 - alpha).
        ("RMSprop", {"lr": 0.01, "alpha": 0.96}, p0 - 0.01 * np.sign(g64) / math.sqrt(0.04)),
        # Centered: the variance (1 - alpha) alpha g², so lr·sign(g)/sqrt(alpha (1 - alpha)).
        ("RMSprop", {"lr": 0.01, "alpha": 0.96, "centered": True}, p0 - 0.01 * np.sign(g64) / math.sqrt(0.96 * 0.04)),
    ]
    for name, kwargs, want in cases:
        got = run(name, kwargs, p0, [g], dtype)[0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{name} {kwargs}")


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_state_dict_round_trip_continues_exactly(rng, config):
    # Stop after 3 steps, rebuild the optimizer from its state_dict, go on: the same bits as
    # the run that never stopped (the step counts, moments and buffers all travel).
    name, kwargs = config
    p0 = rng.standard_normal(45).astype(np.float32)
    grads = gradients(rng, p0.shape, STEPS)
    straight = run(name, kwargs, p0, grads, np.float32)[-1]

    p = nn.Parameter(ember.tensor(p0.copy()))
    opt = getattr(ember.optim, name)([p], **kwargs)
    for g in grads[:3]:
        p.grad = ember.tensor(g)
        opt.step()
    saved = opt.state_dict()
    q = nn.Parameter(ember.tensor(p.detach().numpy().copy()))
    other = getattr(ember.optim, name)([q], lr=123.0)  # the saved hyper-parameters win
    other.load_state_dict(saved)
    for g in grads[3:]:
        q.grad = ember.tensor(g)
        other.step()
    np.testing.assert_array_equal(q.detach().numpy(), straight)
    # Saving copies: stepping the original afterwards does not change what was saved.
    before = {k: np.copy(v) for k, v in saved["state"][0].items()}
    p.grad = ember.tensor(grads[0])
    opt.step()
    for k, v in before.items():
        np.testing.assert_array_equal(saved["state"][0][k], v, err_msg=k)


def test_parameter_groups_take_their_own_hyper_parameters(rng):
    a0, b0 = rng.standard_normal(20).astype(np.float32), rng.standard_normal((3, 7)).astype(np.float32)
    ga, gb = gradients(rng, a0.shape, STEPS), gradients(rng, b0.shape, STEPS)
    a, b = nn.Parameter(ember.tensor(a0)), nn.Parameter(ember.tensor(b0))
    opt = ember.optim.AdamW([{"params": [a]}, {"params": b, "lr": 0.05, "weight_decay": 0.0, "amsgrad": True}],
                            lr=0.01, weight_decay=0.1)
    for x, y in zip(ga, gb):
        a.grad, b.grad = ember.tensor(x), ember.tensor(y)
        opt.step()
    np.testing.assert_allclose(a.detach().numpy(), adam_oracle(a0, ga, lr=0.01, weight_decay=0.1, decoupled=True)[-1],
                               **TOLERANCES[np.float32])
    np.testing.assert_allclose(b.detach().numpy(), adam_oracle(b0, gb, lr=0.05, amsgrad=True, decoupled=True)[-1],
                               **TOLERANCES[np.float32])


def test_parameters_without_gradients_are_left_alone(rng):
    a, b = nn.Parameter(ember.tensor(rng.standard_normal(4))), nn.Parameter(ember.tensor(rng.standard_normal(4)))
    b0 = b.detach().numpy().copy()
    opt = ember.optim.Adam([a, b], lr=0.1)
    a.grad = ember.tensor(rng.standard_normal(4))
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), b0)
    assert id(b) not in opt.state and opt.state[id(a)]["step"] == 1


def test_zero_grad_closure_and_argument_checks(rng):
    p = nn.Parameter(ember.tensor(rng.standard_normal(3).astype(np.float32)))
    opt = ember.optim.SGD([{"params": p}], lr=0.1)  # a group of one Parameter, not a list
    p.grad = ember.tensor(rng.standard_normal(3).astype(np.float32))
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.shape == (3,)
    np.testing.assert_array_equal(p.grad.numpy(), 0.0)
    calls = []

    def closure():
        calls.append(1)
        p.grad = ember.tensor(np.ones(3, np.float32))
        return 2.5

    before = p.detach().numpy().copy()
    assert opt.step(closure) == 2.5 and calls == [1]
    np.testing.assert_allclose(p.detach().numpy(), before - 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="a parameter appears in more than one group"):
        ember.optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="need lr >= 0, got -1"):
        ember.optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="need momentum >= 0, got -0.5"):
        ember.optim.RMSprop([p], momentum=-0.5)
    with pytest.raises(ValueError, match=r"need alpha in \[0, 1\], got 1.5"):
        ember.optim.RMSprop([p], alpha=1.5)
    with pytest.raises(ValueError, match="need eps >= 0, got -1.0"):
        ember.optim.AdamW([p], eps=-1.0)
    with pytest.raises(NotImplementedError):
        ember.optim.Optimizer([p], {"lr": 0.1}).step()
