"""Optimizers: updates against PyTorch's (when installed), parameter groups, state_dict round
trips and argument errors."""

import numpy as np
import pytest

import ember
from ember.autograd.function import Variable
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


# ----------------------------------------------------------------- a step is all or nothing

STEP_CONFIGS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
    ("Adam", {"lr": 0.1, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.1, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
]


def _spoil_read_only(params, opt):
    params[2]._data.flags.writeable = False


def _force_grad(p, g):
    """Set ``p.grad`` past the assignment's own checks (which refuse these gradients as PyTorch's
    do): a gradient that stopped fitting its parameter afterwards, say after ``p._data`` was
    replaced, reaches the optimizer so."""
    with pytest.raises((TypeError, RuntimeError)):
        p.grad = g
    Variable.grad.__set__(p, g)


# What breaks parameter c (group 1, after group 0's float32 and float64 parameters), and the error.
SPOILS = [
    ("float64 grad", lambda ps, o: _force_grad(ps[2], ember.tensor(np.ones(1000), dtype=np.float64)), TypeError,
     r"param_groups\[1\]\['params'\]\[0\]: grad has dtype float64 but the parameter has float32"),
    ("grad shape", lambda ps, o: _force_grad(ps[2], ember.ones(7)), ValueError,
     r"param_groups\[1\]\['params'\]\[0\]: grad has shape \(7,\) but the parameter has \(1000,\)"),
    ("grad not a Tensor", lambda ps, o: _force_grad(ps[2], np.ones(1000, np.float32)), TypeError,
     r"param_groups\[1\]\['params'\]\[0\]: grad must be a Tensor, got ndarray"),
    ("read-only parameter", _spoil_read_only, ValueError,
     r"param_groups\[1\]\['params'\]\[0\]: the parameter is read-only"),
    ("one grad for two parameters", lambda ps, o: setattr(ps[3], "grad", ps[2].grad), ValueError,
     r"param_groups\[1\]: \['params'\]\[0\]\.grad and \['params'\]\[1\]\.grad share memory"),
    ("grad over the parameter", lambda ps, o: setattr(ps[2], "grad", ember.Tensor._wrap(ps[2]._data)), ValueError,
     r"param_groups\[1\]: \['params'\]\[0\] and \['params'\]\[0\]\.grad share memory"),
    ("bad lr", lambda ps, o: o.param_groups[1].update(lr=-1.0), ValueError, r"param_groups\[1\]: need lr >= 0, got -1"),
]


def _step_setup(name, kwargs):
    a, c, d = (nn.Parameter(ember.ones(1000)) for _ in range(3))
    b = nn.Parameter(ember.tensor(np.ones(5), dtype=np.float64))  # the NumPy path
    params = [a, b, c, d]
    return params, getattr(ember.optim, name)([{"params": [a, b]}, {"params": [c, d]}], **kwargs)


def _give_grads(params, k):
    for i, p in enumerate(params):
        p.grad = ember.tensor(np.linspace(-1, 1, p.shape[0]) * (k + 1) + i, dtype=p.dtype)


@pytest.mark.parametrize("spoil, error, match", [s[1:] for s in SPOILS], ids=[s[0] for s in SPOILS])
@pytest.mark.parametrize("name, kwargs", STEP_CONFIGS, ids=[c[0] for c in STEP_CONFIGS])
def test_a_refused_step_changes_nothing(name, kwargs, spoil, error, match):
    """A step that raises leaves every parameter (of every group, on both paths) and the state
    as they were: the next good step goes on exactly as if the refused one had not been asked."""
    params, opt = _step_setup(name, kwargs)
    ref_params, ref = _step_setup(name, kwargs)
    for ps, o in ((params, opt), (ref_params, ref)):
        _give_grads(ps, 0)
        o.step()
    before = [p.detach().numpy().copy() for p in params]
    state = opt.state_dict()
    _give_grads(params, 1)
    spoil(params, opt)
    with pytest.raises(error, match=match):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    for i, entries in state["state"].items():
        after = opt.state_dict()["state"][i]
        assert after.keys() == entries.keys()
        for key, value in entries.items():
            np.testing.assert_array_equal(after[key], value, err_msg=f"state[{i}][{key!r}]")
    params[2]._data.flags.writeable = True
    opt.param_groups[1]["lr"] = opt.param_groups[0]["lr"]
    for ps, o in ((params, opt), (ref_params, ref)):
        _give_grads(ps, 1)
        o.step()
    for p, r in zip(params, ref_params):
        np.testing.assert_array_equal(p.detach().numpy(), r.detach().numpy())
    mine, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    for i in theirs:
        for key in theirs[i]:
            np.testing.assert_array_equal(mine[i][key], theirs[i][key])
    if torch is None:
        return
    tparams = [torch.nn.Parameter(torch.ones(1000)), torch.nn.Parameter(torch.ones(5, dtype=torch.float64)),
               torch.nn.Parameter(torch.ones(1000)), torch.nn.Parameter(torch.ones(1000))]
    topt = getattr(torch.optim, name)([{"params": tparams[:2]}, {"params": tparams[2:]}], **kwargs)
    for k in range(2):
        for i, p in enumerate(tparams):
            p.grad = torch.from_numpy(np.linspace(-1, 1, p.shape[0]) * (k + 1) + i).to(p.dtype)
        topt.step()
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_sgd_refused_step_leaves_no_momentum_buffer():
    p = nn.Parameter(np.ones(1000, np.float32))
    opt = ember.optim.SGD([p], lr=0.1, momentum=0.9)
    _force_grad(p, ember.Tensor._wrap(np.ones(1000, np.float64)))
    with pytest.raises(TypeError, match=r"SGD.step: param_groups\[0\]\['params'\]\[0\]: grad has dtype float64"):
        opt.step()
    assert opt.state == {}
    p.grad = ember.Tensor._wrap(np.ones(1000, np.float32))
    opt.step()  # the first step: the buffer is the gradient, p = 1 - 0.1
    np.testing.assert_allclose(p.detach().numpy(), 0.9, rtol=1e-7)
    np.testing.assert_array_equal(opt.state[id(p)]["momentum_buffer"], 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_refuses_negative_dampening(dtype):
    """The native step refuses dampening < 0, so SGD does for every dtype, when it is made (PyTorch
    takes it) and at a step when it was set later."""
    p = nn.Parameter(ember.tensor(np.ones(4), dtype=dtype))
    with pytest.raises(ValueError, match=r"need dampening >= 0, got -0.5"):
        ember.optim.SGD([p], lr=0.1, momentum=0.9, dampening=-0.5)
    opt = ember.optim.SGD([p], lr=0.1, momentum=0.9)
    opt.param_groups[0]["dampening"] = -0.5
    p.grad = ember.tensor(np.ones(4), dtype=dtype)
    with pytest.raises(ValueError, match=r"SGD.step: param_groups\[0\]: need dampening >= 0, got -0.5"):
        opt.step()
    np.testing.assert_array_equal(p.detach().numpy(), 1.0)
    assert opt.state == {}


def test_a_misaligned_float32_parameter_takes_the_numpy_path():
    buf = np.frombuffer(bytearray(4 * 8 + 1), np.float32, count=8, offset=1)
    buf[:] = 1.0
    assert not buf.flags.aligned
    p = nn.Parameter(buf)
    opt = ember.optim.SGD([p], lr=0.5, momentum=0.9)
    p.grad = ember.ones(8)
    opt.step()
    np.testing.assert_array_equal(p.detach().numpy(), 0.5)


@pytest.mark.parametrize("name, kwargs", STEP_CONFIGS[:2], ids=[c[0] for c in STEP_CONFIGS[:2]])
def test_a_group_over_two_devices_steps_each_on_its_own(rng, name, kwargs):
    import strict_device

    strict_device.register()
    w0, grads = rng.standard_normal((2, 6)).astype(np.float32), rng.standard_normal((3, 2, 6)).astype(np.float32)
    mixed = [nn.Parameter(ember.tensor(w0[0])), nn.Parameter(ember.tensor(w0[1], device="strict"))]
    alone = [nn.Parameter(ember.tensor(w)) for w in w0]
    opts = [getattr(ember.optim, name)(ps, **kwargs) for ps in (mixed, alone)]
    for g in grads:
        for ps, o in ((mixed, opts[0]), (alone, opts[1])):
            for p, gi in zip(ps, g):
                p.grad = ember.tensor(gi, device=p.device)
            o.step()
    for m, a in zip(mixed, alone):
        np.testing.assert_array_equal(m.detach().cpu().numpy(), a.detach().numpy())


def test_rmsprop_starts_a_buffer_turned_on_after_the_first_step():
    p = nn.Parameter(ember.tensor(np.ones(3)))
    opt = ember.optim.RMSprop([p], lr=0.01, alpha=0.5)
    lr, alpha, eps, mu = 0.01, 0.5, 1e-8, 0.9
    w, sq, mean, buf = np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3)
    for k, g in enumerate([np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, -1.0]), np.array([2.0, 0.0, 1.0])]):
        if k == 1:  # momentum and centered turned on: their buffers start at zero now
            opt.param_groups[0].update(momentum=mu, centered=True)
        p.grad = ember.tensor(g)
        opt.step()
        sq = alpha * sq + (1 - alpha) * g * g
        if k >= 1:
            mean = alpha * mean + (1 - alpha) * g
            buf = mu * buf + g / (np.sqrt(sq - mean * mean) + eps)
            w = w - lr * buf
        else:
            w = w - lr * g / (np.sqrt(sq) + eps)
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-13)


# ----------------------------------------------------------------- the closure

@pytest.mark.parametrize("name, kwargs", STEP_CONFIGS, ids=[c[0] for c in STEP_CONFIGS])
def test_the_closure_runs_with_autograd_on(device, rng, name, kwargs):
    """step(closure) calls the closure with autograd on, so it may call backward (PyTorch's
    enable_grad), even inside no_grad; grad mode is as it was afterwards."""
    w0 = rng.standard_normal(5).astype(np.float32)
    p = nn.Parameter(ember.tensor(w0))
    opt = getattr(ember.optim, name)([p], **kwargs)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    losses = []
    for k in range(3):
        if k == 2:
            with ember.no_grad():
                losses.append(opt.step(closure).item())
            assert ember.autograd.is_grad_enabled()
        else:
            losses.append(opt.step(closure).item())
    if name == "SGD":  # loss = |w|^2, gradient 2w: the first step's closed form
        np.testing.assert_allclose(losses[0], float((w0.astype(np.float64) ** 2).sum()), rtol=1e-6)
        w1 = w0 - 0.1 * 2 * w0
        np.testing.assert_allclose(losses[1], float((w1.astype(np.float64) ** 2).sum()), rtol=1e-5)
    if torch is None:
        return
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = getattr(torch.optim, name)([tp], **kwargs)

    def tclosure():
        topt.zero_grad()
        loss = (tp * tp).sum()
        loss.backward()
        return loss

    theirs = [topt.step(tclosure).item() for _ in range(3)]
    np.testing.assert_allclose(losses, theirs, rtol=1e-5)
    np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_amsgrad_turned_on_between_steps_starts_its_running_max_there():
    """PyTorch's Adam raises KeyError halfway through such a step (after updating the groups
    before); Ember starts the running max of the second moment from the current one."""
    def run(toggle):
        a, b = nn.Parameter(np.full(4, 1.0, np.float32)), nn.Parameter(np.full(4, 2.0, np.float32))
        opt = ember.optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
        for k in range(3):
            if toggle and k == 1:
                opt.param_groups[1]["amsgrad"] = True
            for p in (a, b):
                p.grad = ember.tensor(np.linspace(-1, 1, 4) * (k + 1), dtype=np.float32)
            opt.step()
        return a, b, opt

    a, b, opt = run(True)
    a0, b0, _ = run(False)
    np.testing.assert_array_equal(a.detach().numpy(), a0.detach().numpy())  # group 0 as without the switch
    assert opt.state[id(a)]["step"] == opt.state[id(b)]["step"] == 3
    v = opt.state[id(b)]["exp_avg_sq"]
    assert np.all(opt.state[id(b)]["max_exp_avg_sq"] >= v)
