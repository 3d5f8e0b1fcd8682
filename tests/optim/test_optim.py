"""Optimizers: updates against PyTorch's (when installed), parameter groups, state_dict round
trips and argument errors."""

import numpy as np
import pytest

import ember
from ember import kernels
from ember import nn

try:
    import torch
except ImportError:  # optional reference
    torch = None


CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
]


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_updates_match_pytorch(device, rng, name, kwargs):
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    p = nn.Parameter(ember.tensor(w0))
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = getattr(ember.optim, name)([p], **kwargs)
    topt = getattr(torch.optim, name)([tp], **kwargs)
    for _ in range(10):
        g = rng.standard_normal((4, 3)).astype(np.float32)
        p.grad = ember.tensor(g)
        tp.grad = torch.from_numpy(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_groups_state_dict_and_errors(device, rng):
    a, b = nn.Parameter(ember.randn(3)), nn.Parameter(ember.randn(2))
    opt = ember.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    a.grad, b.grad = ember.ones(3), ember.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][1]["params"] == [1] and "momentum_buffer" in sd["state"][0]
    fresh = ember.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(fresh.state[id(a)]["momentum_buffer"], opt.state[id(a)]["momentum_buffer"])
    opt.zero_grad()
    assert a.grad is None
    with pytest.raises(ValueError, match="empty parameter list"):
        ember.optim.Adam([])
    with pytest.raises(TypeError, match="parameter 0 of group 0 is a Tensor, not a Parameter"):
        ember.optim.SGD([ember.randn(2, requires_grad=True)])
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        ember.optim.SGD([a], nesterov=True)
    with pytest.raises(ValueError, match="betas in"):
        ember.optim.Adam([a], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="do not match this optimizer"):
        ember.optim.SGD([a]).load_state_dict(sd)


def test_hyper_parameters_fit_float32_and_a_bad_one_stops_the_whole_step(device):
    a, b = nn.Parameter(ember.ones(3)), nn.Parameter(ember.ones(2))
    for value in (1e39, float("inf"), float("nan")):  # the kernels compute in float32
        with pytest.raises(ValueError, match=r"lr must be finite and within float32's range"):
            ember.optim.SGD([a], lr=value)
    with pytest.raises(ValueError, match=r"eps must be finite"):
        ember.optim.Adam([a], eps=float("inf"))
    opt = ember.optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = ember.ones(3), ember.ones(2)
    opt.param_groups[1]["lr"] = float("nan")  # as a scheduler or a user might set it
    with pytest.raises(ValueError, match=r"Adam.step: param_groups\[1\]: lr must be finite"):
        opt.step()
    np.testing.assert_array_equal(a.detach().cpu().numpy(), np.ones(3))  # group 0 untouched too
    assert opt.state == {}  # no step counted


@pytest.mark.parametrize("name, key, value, message", [
    ("Adam", "exp_avg_sq", -1.0, "holds negative values; it is an average of squares"),
    ("Adam", "exp_avg", float("nan"), "holds NaN or infinite values"),
    ("SGD", "momentum_buffer", float("inf"), "holds NaN or infinite values"),
    ("RMSprop", "square_avg", -0.5, "holds negative values"),
])
def test_loaded_state_must_be_finite_and_squares_non_negative(name, key, value, message):
    """A state that would turn the weights into NaN on the next step is refused at the load."""
    p = nn.Parameter(ember.ones((2, 2)))
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(ember.optim, name)([p], lr=0.01, **kwargs)
    p.grad = ember.ones((2, 2))
    opt.step()
    sd = opt.state_dict()
    sd["state"][0][key] = np.full((2, 2), value, np.float32)
    fresh = getattr(ember.optim, name)([p], lr=0.01, **kwargs)
    with pytest.raises(ValueError, match=rf"state\[0\]\['{key}'\] {message}"):
        fresh.load_state_dict(sd)
    assert fresh.state == {}


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_native_adam_step_matches_its_reference(device, isa, rng, num_threads, amsgrad, decoupled, maximize):
    # One call over several parameters of awkward sizes (one of several threads' worth, odd),
    # each at its own step.
    sizes, steps = (100_003, 1, 37), [7, 1, 300]

    def state(n):
        return [rng.standard_normal(n).astype(np.float32) for _ in range(2)] + [
            rng.standard_normal(n).astype(np.float32) * 0.1, np.abs(rng.standard_normal(n)).astype(np.float32),
            np.abs(rng.standard_normal(n)).astype(np.float32) if amsgrad else None]

    ref = [state(n) for n in sizes]
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        runs = []
        for reference in (False, True):
            arrays = [[None if a is None else a.copy() for a in r] for r in ref]
            p, g, m, v, vmax = (list(col) for col in zip(*arrays))
            kernels.optim_step.adam_step(p, g, m, v, vmax if amsgrad else None, steps, lr=1e-3, beta1=0.9,
                                         beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=decoupled,
                                         maximize=maximize, reference=reference)
            runs.append(arrays)
        for got, want, before in zip(*runs, ref):
            # float32 rounding at the scale of the step's terms: the inputs' values as well as the
            # result's (a moment of one element can nearly cancel, 0.9 m + 0.1 g ~ 0)
            scale = max(np.abs(a).max() for a in before if a is not None)
            for gv, w in zip(got, want):
                if gv is not None:
                    np.testing.assert_allclose(gv, w, rtol=1e-5, atol=1e-6 * max(np.abs(w).max(), scale))


@pytest.mark.parametrize("momentum, nesterov, first", [(0.0, False, False), (0.9, False, True), (0.9, True, False)])
def test_native_sgd_step_matches_its_reference(device, isa, rng, num_threads, momentum, nesterov, first):
    sizes = (70_001, 3)
    p, g, buf = ([rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3))
    runs = []
    for reference in (False, True):
        pc = [a.copy() for a in p]
        bc = [a.copy() for a in buf] if momentum else None
        kernels.optim_step.sgd_step(pc, g, bc, lr=0.1, momentum=momentum, dampening=0.0 if nesterov else 0.2,
                                    weight_decay=0.01, nesterov=nesterov, first=first, reference=reference)
        runs.append(pc + (bc or []))
    for a, b in zip(*runs):  # float32 rounding of p - lr d, at the scale of the values
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_adam_with_beta1_zero_keeps_the_gradient_exactly(isa):
    """With beta1 = 0 the first moment is the gradient itself: the float lerp m + 1 * (g - m) would
    round g to m's magnitude (here to 4 significant digits)."""
    g = np.full(37, -0.00044317409629, np.float32)
    m = np.full(37, 0.3, np.float32)
    p, v = np.full(37, -0.7364541, np.float32), np.full(37, 0.7, np.float32)
    kernels.optim_step.adam_step([p], [g], [m], [v], None, [1], lr=0.1, beta1=0.0, beta2=0.0, eps=1e-8)
    np.testing.assert_array_equal(m, g)
    np.testing.assert_allclose(p, -0.7364541 + 0.1 * 0.00044317409629 / (0.00044317409629 + 1e-8), rtol=1e-6)


def test_float64_parameters_take_the_numpy_path(device, rng):
    # The same updates for a float64 parameter (NumPy) and a float32 one (the native pass).
    w0 = rng.standard_normal(50)
    for name, kwargs in CONFIGS:
        p64 = nn.Parameter(ember.tensor(w0, dtype=np.float64))
        p32 = nn.Parameter(ember.tensor(w0.astype(np.float32)))
        o64, o32 = getattr(ember.optim, name)([p64], **kwargs), getattr(ember.optim, name)([p32], **kwargs)
        for _ in range(5):
            g = rng.standard_normal(50)
            p64.grad, p32.grad = ember.tensor(g, dtype=np.float64), ember.tensor(g.astype(np.float32))
            o64.step()
            o32.step()
        np.testing.assert_allclose(p32.detach().cpu().numpy(), p64.detach().cpu().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_native_step_bad_input(device):
    p = np.zeros(4, np.float32)
    step = kernels.optim_step.adam_step
    hyper = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    with pytest.raises(ValueError, match=r"grads\[0\] has 3 elements, params\[0\] has 4"):
        step([p], [np.zeros(3, np.float32)], [np.zeros(4, np.float32)], [np.zeros(4, np.float32)], None, [1], **hyper)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] must have dtype float32"):
        step([p], [p.copy()], [np.zeros(4)], [np.zeros(4, np.float32)], None, [1], **hyper)
    with pytest.raises(ValueError, match=r"steps\[0\] must be >= 1, got 0"):
        step([p], [p.copy()], [p.copy()], [p.copy()], None, [0], **hyper)
    with pytest.raises(ValueError, match="grads has 2 entries for 1 parameters"):
        step([p], [p.copy(), p.copy()], [p.copy()], [p.copy()], None, [1], **hyper)
    with pytest.raises(ValueError, match="must not share memory"):
        kernels.optim_step.sgd_step([p], [p], None, lr=0.1)
