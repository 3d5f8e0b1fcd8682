"""Optimizers: updates against PyTorch's (when installed), parameter groups, state_dict round
trips and argument errors."""

import numpy as np
import pytest

import ember
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
def test_updates_match_pytorch(rng, name, kwargs):
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
    np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_groups_state_dict_and_errors(rng):
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


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_native_adam_step_matches_its_reference(isa, rng, num_threads, amsgrad, decoupled, maximize):
    n = 100_003  # several threads' worth, odd
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(2)] + [
        rng.standard_normal(n).astype(np.float32) * 0.1, np.abs(rng.standard_normal(n)).astype(np.float32),
        np.abs(rng.standard_normal(n)).astype(np.float32) if amsgrad else None]
    ref = [None if a is None else a.copy() for a in arrays]
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        got = [None if a is None else a.copy() for a in arrays]
        ember._C.adam_step(*([a] if a is not None else None for a in got), [7], 1e-3, 0.9, 0.999, 1e-8, 0.01,
                           decoupled, maximize)
        want = [None if a is None else a.copy() for a in ref]
        ember._C.adam_step_ref(*([a] if a is not None else None for a in want), [7], 1e-3, 0.9, 0.999, 1e-8, 0.01,
                               decoupled, maximize)
        for g, w in zip(got, want):
            if g is not None:  # float32 rounding, at the scale of the values
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * np.abs(w).max())


@pytest.mark.parametrize("momentum, nesterov, first", [(0.0, False, False), (0.9, False, True), (0.9, True, False)])
def test_native_sgd_step_matches_its_reference(isa, rng, num_threads, momentum, nesterov, first):
    n = 70_001
    p, g, buf = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    buf = buf if momentum else None
    got = [p.copy(), g, None if buf is None else buf.copy()]
    want = [p.copy(), g, None if buf is None else buf.copy()]
    ember._C.sgd_step(*([a] if a is not None else None for a in got), 0.1, momentum, 0.0 if nesterov else 0.2, 0.01,
                      nesterov, False, first)
    ember._C.sgd_step_ref(*([a] if a is not None else None for a in want), 0.1, momentum, 0.0 if nesterov else 0.2,
                          0.01, nesterov, False, first)
    for a, b in zip(got, want):
        if a is not None:  # float32 rounding of p - lr d, at the scale of the values
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_float64_parameters_take_the_numpy_path(rng):
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
        np.testing.assert_allclose(p32.detach().numpy(), p64.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_native_step_bad_input():
    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"grads\[0\] has 3 elements, params\[0\] has 4"):
        ember._C.adam_step([p], [np.zeros(3, np.float32)], [np.zeros(4, np.float32)], [np.zeros(4, np.float32)],
                           None, [1], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] must have dtype float32"):
        ember._C.adam_step([p], [p.copy()], [np.zeros(4)], [np.zeros(4, np.float32)], None, [1], 1e-3, 0.9, 0.999,
                           1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match=r"steps\[0\] must be >= 1"):
        ember._C.adam_step([p], [p.copy()], [p.copy()], [p.copy()], None, [0], 1e-3, 0.9, 0.999, 1e-8, 0.0, False,
                           False)
    with pytest.raises(ValueError, match="must not share memory"):
        ember._C.sgd_step([p], [p], None, 0.1, 0.0, 0.0, 0.0, False, False, False)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_native_steps_update_a_whole_parameter_group(isa, rng, num_threads, amsgrad):
    # One call over tensors of many sizes (empty, tiny, several threads' worth), each with its
    # own step count: every tensor as the reference updates it, whatever the thread split.
    sizes = [0, 1, 5, 40_000, 3, 70_001, 17]
    params = [rng.standard_normal(n).astype(np.float32).reshape(-1, 1) for n in sizes]  # any shape
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    m = [0.1 * g for g in grads]
    v = [np.abs(g) for g in grads]
    vmax = [2 * np.abs(g) for g in grads] if amsgrad else None
    steps = [1 + i for i in range(len(sizes))]
    for threads in (1, 2, 3):
        ember.set_num_threads(threads)
        got, want = ([None if arrays is None else [a.copy() for a in arrays] for arrays in (params, m, v, vmax)]
                     for _ in range(2))
        ember._C.adam_step(got[0], grads, got[1], got[2], got[3], steps, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False)
        ember._C.adam_step_ref(want[0], grads, want[1], want[2], want[3], steps, 1e-3, 0.9, 0.999, 1e-8, 0.01, True,
                               False)
        for gl, wl in zip(got, want):
            for g, w in zip(gl or [], wl or []):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * (np.abs(w).max() if w.size else 1))
        p_got, p_want = [a.copy() for a in params], [a.copy() for a in params]
        b_got, b_want = [a.copy() for a in m], [a.copy() for a in m]
        ember._C.sgd_step(p_got, grads, b_got, 0.1, 0.9, 0.1, 0.01, False, False, False)
        ember._C.sgd_step_ref(p_want, grads, b_want, 0.1, 0.9, 0.1, 0.01, False, False, False)
        for g, w in zip(p_got + b_got, p_want + b_want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6 * (np.abs(w).max() if w.size else 1))


def test_native_steps_refuse_mismatched_groups():
    p = [np.zeros(4, np.float32), np.zeros(2, np.float32)]
    with pytest.raises(ValueError, match="grads has 1 arrays but params has 2"):
        ember._C.sgd_step(p, [np.zeros(4, np.float32)], None, 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="steps has 1 counts but params has 2"):
        ember._C.adam_step(p, [a.copy() for a in p], [a.copy() for a in p], [a.copy() for a in p], None, [1], 1e-3,
                           0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] must not share memory"):
        whole = np.zeros(6, np.float32)
        ember._C.sgd_step([whole[:4], whole[3:]], [np.zeros(4, np.float32), np.zeros(3, np.float32)], None, 0.1,
                          0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(TypeError, match="params must be a list"):
        ember._C.sgd_step(p[0], [p[0]], None, 0.1, 0.0, 0.0, 0.0, False, False, False)
