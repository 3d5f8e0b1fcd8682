"""Every learning-rate schedule against its closed form over many epochs, without PyTorch: two
parameter groups with their own base rates, a state_dict round trip in the middle that must
continue exactly, resuming with last_epoch, ReduceLROnPlateau's rules, and argument checks."""

import math

import numpy as np
import pytest

import ember
from ember import nn
from ember.optim import lr_scheduler as S

EPOCHS = 75
BASES = (0.1, 0.03)


def cosine(start, end, pct):
    """From start (pct 0) to end (pct 1) along half a cosine."""
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


def one_cycle_at(base_max, epoch, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                 anneal_strategy="cos", three_phase=False, base_momentum=0.85, max_momentum=0.95):
    """The rate and the momentum of a one cycle at step ``epoch``."""
    initial = base_max / div_factor
    low = initial / final_div_factor
    peak = pct_start * total_steps - 1  # the step at which the rate is highest
    if three_phase:  # up, down as fast, then to the floor at the highest momentum
        ends = (peak, 2 * peak, total_steps - 1)
        rates = ((initial, base_max), (base_max, initial), (initial, low))
        momenta = ((max_momentum, base_momentum), (base_momentum, max_momentum), (max_momentum, max_momentum))
    else:
        ends = (peak, total_steps - 1)
        rates = ((initial, base_max), (base_max, low))
        momenta = ((max_momentum, base_momentum), (base_momentum, max_momentum))
    phase = next((k for k, end in enumerate(ends) if epoch <= end), len(ends) - 1)
    start = ends[phase - 1] if phase else 0.0
    pct = (epoch - start) / (ends[phase] - start)
    if anneal_strategy == "cos":
        return cosine(*rates[phase], pct), cosine(*momenta[phase], pct)
    return tuple(a + (b - a) * pct for a, b in (rates[phase], momenta[phase]))


def one_cycle(base_max, epoch, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    return one_cycle_at(base_max, epoch, total_steps, pct_start, div_factor, final_div_factor)[0]


# name, constructor arguments, closed form lr(base, epoch)
SCHEDULES = [
    ("StepLR", {"step_size": 7, "gamma": 0.5}, lambda b, e: b * 0.5 ** (e // 7)),
    ("StepLR", {"step_size": 1}, lambda b, e: b * 0.1**e),
    ("MultiStepLR", {"milestones": [30, 10, 30, 61], "gamma": 0.5},  # unsorted, 30 twice
     lambda b, e: b * 0.5 ** ((e >= 10) + 2 * (e >= 30) + (e >= 61))),
    ("ExponentialLR", {"gamma": 0.95}, lambda b, e: b * 0.95**e),
    ("CosineAnnealingLR", {"T_max": 20, "eta_min": 0.001},  # and on past T_max, as PyTorch's closed form
     lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 20)) / 2),
    ("CosineAnnealingLR", {"T_max": 1}, lambda b, e: b * (1 + math.cos(math.pi * e)) / 2),
    ("LinearLR", {}, lambda b, e: b * (1 / 3 + (2 / 3) * min(e, 5) / 5)),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 40},
     lambda b, e: b * (1.0 - 0.9 * min(e, 40) / 40)),
    ("WarmupCosineLR", {"warmup_steps": 10, "total_steps": 60},  # and flat at the floor after total_steps
     lambda b, e: b * (e + 1) / 10 if e < 10 else b * (0.1 + 0.9 * (1 + math.cos(math.pi * min(1, (e - 10) / 50))) / 2)),
    ("WarmupCosineLR", {"warmup_steps": 0, "total_steps": 1, "min_factor": 0.0},
     lambda b, e: b if e == 0 else 0.0),
    ("OneCycleLR", {"max_lr": [0.1, 0.03], "total_steps": EPOCHS}, lambda b, e: one_cycle(b, e, EPOCHS)),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": EPOCHS, "pct_start": 0.5, "div_factor": 10.0,
                    "final_div_factor": 100.0},
     lambda b, e: one_cycle(0.5, e, EPOCHS, 0.5, 10.0, 100.0)),
]


def schedule_id(s):
    return s[0] + "-" + "-".join(f"{k}={v}" for k, v in s[1].items())


def optimizer():
    params = [nn.Parameter(ember.zeros(2)), nn.Parameter(ember.zeros(3))]
    return ember.optim.SGD([{"params": [params[0]], "lr": BASES[0]}, {"params": [params[1]], "lr": BASES[1]}],
                           momentum=0.9)


def lrs_over(sched, opt, epochs):
    got = []
    for _ in range(epochs):
        got.append(sched.get_last_lr())
        assert got[-1] == [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step()
    return got


@pytest.mark.parametrize("schedule", SCHEDULES, ids=schedule_id)
def test_schedule_follows_its_closed_form(schedule):
    name, kwargs, closed_form = schedule
    opt = optimizer()
    sched = getattr(S, name)(opt, **kwargs)
    got = lrs_over(sched, opt, EPOCHS - 1 if name == "OneCycleLR" else EPOCHS)
    want = [[closed_form(base, e) for base in BASES] for e in range(len(got))]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert sched.last_epoch == len(got)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=schedule_id)
@pytest.mark.parametrize("stop", [1, 9, 33])
def test_state_dict_round_trip_continues_the_schedule(schedule, stop):
    # PyTorch's recipe: build the optimizer and scheduler anew, load both states, go on.
    name, kwargs, closed_form = schedule
    opt = optimizer()
    sched = getattr(S, name)(opt, **kwargs)
    lrs_over(sched, opt, stop)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in sched_state and sched_state["last_epoch"] == stop
    fresh_opt = optimizer()
    fresh = getattr(S, name)(fresh_opt, **kwargs)
    fresh_opt.load_state_dict(opt_state)
    fresh.load_state_dict(sched_state)
    rest = lrs_over(fresh, fresh_opt, EPOCHS - 1 - stop)
    want = [[closed_form(base, e) for base in BASES] for e in range(stop, EPOCHS - 1)]
    np.testing.assert_allclose(rest, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, kwargs", [("StepLR", {"step_size": 3}), ("ExponentialLR", {"gamma": 0.9}),
                                          ("CosineAnnealingLR", {"T_max": 10}), ("LinearLR", {"total_iters": 8})])
def test_last_epoch_resumes_from_initial_lr(name, kwargs):
    # A scheduler built with last_epoch=k (after one that recorded initial_lr) starts at epoch k + 1.
    opt = optimizer()
    first = getattr(S, name)(opt, **kwargs)
    lrs_over(first, opt, 4)
    resumed = getattr(S, name)(opt, last_epoch=first.last_epoch, **kwargs)
    reference = getattr(S, name)(optimizer(), **kwargs)
    for _ in range(first.last_epoch + 1):
        reference.step()
    assert resumed.last_epoch == reference.last_epoch == 5
    np.testing.assert_allclose(resumed.get_last_lr(), reference.get_last_lr(), rtol=1e-15)
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASES)
    with pytest.raises(KeyError):  # resuming needs the initial_lr a first scheduler recorded
        getattr(S, name)(ember.optim.SGD([nn.Parameter(ember.zeros(1))], lr=0.1), last_epoch=3, **kwargs)


def test_one_cycle_ends_and_refuses_extra_steps():
    opt = optimizer()
    sched = S.OneCycleLR(opt, max_lr=[1.0, 2.0], total_steps=10, div_factor=4.0, final_div_factor=5.0)
    np.testing.assert_allclose(sched.get_last_lr(), [0.25, 0.5], rtol=1e-15)  # max / div_factor
    for _ in range(2):
        sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [1.0, 2.0], rtol=1e-15)  # the peak, at 0.3 * 10 - 1
    for _ in range(7):
        sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [0.05, 0.1], rtol=1e-12)  # initial / final_div_factor
    sched.step()  # step total_steps is PyTorch's last allowed one
    with pytest.raises(ValueError, match="stepped 11 times with total_steps=10"):
        sched.step()


def test_a_custom_schedule_needs_only_lr_at():
    class Halving(S.LRScheduler):
        def lr_at(self, base_lr, epoch):
            return base_lr / 2**epoch

    opt = optimizer()
    got = lrs_over(Halving(opt), opt, 12)
    np.testing.assert_allclose(got, [[b / 2**e for b in BASES] for e in range(12)], rtol=1e-15)
    with pytest.raises(NotImplementedError):
        S.LRScheduler(optimizer())


def plateau_lrs(sched, opt, metrics):
    out = []
    for m in metrics:
        sched.step(m)
        out.append([g["lr"] for g in opt.param_groups])
    return np.array(out)


@pytest.mark.parametrize("patience, cooldown", [(0, 0), (2, 0), (3, 2), (1, 4)])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_reduce_on_plateau_on_a_flat_metric(mode, patience, cooldown):
    # A metric that never improves: the first reduction after patience + 1 bad epochs, then one
    # every cooldown + patience + 1 epochs, never below min_lr, and none smaller than eps.
    opt = optimizer()
    sched = S.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=patience, cooldown=cooldown,
                                min_lr=[1e-3, 0.0])
    n = 40
    got = plateau_lrs(sched, opt, [0.7] * n)
    calls = np.arange(1, n + 1)
    first = patience + 2
    reductions = np.where(calls < first, 0, 1 + (calls - first) // (cooldown + patience + 1))
    last = next(k for k in range(100) if BASES[1] * 0.5**k * 0.5 <= 1e-8)  # halving by <= eps: not made
    want = np.stack([np.maximum(BASES[0] * 0.5**reductions, 1e-3), BASES[1] * 0.5 ** np.minimum(reductions, last)],
                    axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert sched.last_epoch == n


@pytest.mark.parametrize("mode, threshold_mode, enough, too_little", [
    ("min", "rel", lambda n: 0.99**n, lambda n: 0.99999**n),           # threshold 1e-3 of the best
    ("max", "rel", lambda n: 1.01**n, lambda n: 1.00001**n),
    ("min", "abs", lambda n: 5 - 0.01 * n, lambda n: 5 - 0.0001 * n),  # threshold 1e-3 absolute
    ("max", "abs", lambda n: 0.01 * n, lambda n: 0.0001 * n),
], ids=["min-rel", "max-rel", "min-abs", "max-abs"])
def test_reduce_on_plateau_threshold(mode, threshold_mode, enough, too_little):
    for metric, reduces in ((enough, False), (too_little, True)):
        opt = optimizer()
        sched = S.ReduceLROnPlateau(opt, mode=mode, threshold=1e-3, threshold_mode=threshold_mode, patience=2,
                                    factor=0.1)
        got = plateau_lrs(sched, opt, [metric(i) for i in range(12)])
        if reduces:  # the gains since the best stay under the threshold: a plateau
            np.testing.assert_allclose(got[3], np.array(BASES) * 0.1, rtol=1e-12)
            np.testing.assert_allclose(got[:3], [BASES] * 3)
        else:
            np.testing.assert_allclose(got, [BASES] * 12)


def test_reduce_on_plateau_state_dict_and_eps():
    metrics = [1.0, 0.5, 0.6, 0.6, 0.4, 0.45, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    opt = optimizer()
    straight = plateau_lrs(S.ReduceLROnPlateau(opt, patience=1, factor=0.3, cooldown=1), opt, metrics)
    opt = optimizer()
    sched = S.ReduceLROnPlateau(opt, patience=1, factor=0.3, cooldown=1)
    first = plateau_lrs(sched, opt, metrics[:7])
    fresh_opt = optimizer()
    fresh = S.ReduceLROnPlateau(fresh_opt, patience=1, factor=0.3, cooldown=1)
    fresh_opt.load_state_dict(opt.state_dict())
    fresh.load_state_dict(sched.state_dict())
    rest = plateau_lrs(fresh, fresh_opt, metrics[7:])
    np.testing.assert_array_equal(np.concatenate([first, rest]), straight)
    assert (np.diff(straight, axis=0) <= 0).all() and straight[-1, 0] < BASES[0]
    # A reduction smaller than eps is not made.
    opt = optimizer()
    tiny = S.ReduceLROnPlateau(opt, patience=0, factor=0.999, eps=1e-3)
    np.testing.assert_allclose(plateau_lrs(tiny, opt, [1.0, 1.0, 1.0]), [BASES] * 3)


@pytest.mark.parametrize("make, match", [
    (lambda o: S.StepLR(o, 0), "step_size must be >= 1"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), "T_max must be >= 1"),
    (lambda o: S.LinearLR(o, start_factor=0.0), "need 0 < start_factor <= 1"),
    (lambda o: S.LinearLR(o, end_factor=1.5), "0 <= end_factor <= 1"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=0), "total_steps must be >= 1"),
    (lambda o: S.WarmupCosineLR(o, 10, 5), r"total_steps \(5\) must be >= 1 and >= warmup_steps \(10\)"),
    (lambda o: S.WarmupCosineLR(o, -1, 5), "warmup_steps must be an int >= 0"),
    (lambda o: S.WarmupCosineLR(o, 1, 5.0), "total_steps must be an int >= 0"),
    (lambda o: S.WarmupCosineLR(o, 1, 5, min_factor=1.5), r"min_factor must be in \[0, 1\]"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0), "factor must be < 1"),
    (lambda o: S.ReduceLROnPlateau(o, mode="lowest"), "mode must be 'min' or 'max'"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="relative"), "threshold_mode 'rel' or 'abs'"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(optimizer())


def test_reduce_on_plateau_takes_one_min_lr_per_group():
    a, b = nn.Parameter(ember.ones(2)), nn.Parameter(ember.ones(2))
    opt = ember.optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    with pytest.raises(ValueError, match=r"min_lr must be one number or one per parameter group \(2\), got 1"):
        S.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0])
    plateau = S.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.5])
    for loss in (1.0, 2.0, 3.0):
        plateau.step(loss)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.01), 0.5]  # both groups reduced, to their floors


def test_schedules_on_one_optimizer_chain_as_pytorchs_do():
    # A warm-up with a decay: the product of the factors, each at its own step (PyTorch's result).
    opt = optimizer()
    warm = S.LinearLR(opt, start_factor=0.25, total_iters=4)
    decay = S.ExponentialLR(opt, gamma=0.9)
    got = []
    for _ in range(10):
        got.append([g["lr"] for g in opt.param_groups])
        warm.step()
        decay.step()
    want = [[b * (0.25 + 0.75 * min(e, 4) / 4) * 0.9**e for b in BASES] for e in range(10)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    torch = pytest.importorskip("torch")
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    topt = torch.optim.SGD([{"params": [params[0]], "lr": BASES[0]}, {"params": [params[1]], "lr": BASES[1]}])
    tw = torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.25, total_iters=4)
    td = torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.9)
    theirs = []
    for _ in range(10):
        theirs.append([g["lr"] for g in topt.param_groups])
        topt.step()
        tw.step()
        td.step()
    np.testing.assert_allclose(got, theirs, rtol=1e-12)


def test_a_plateau_reduction_survives_a_chained_schedule():
    opt = optimizer()
    step = S.StepLR(opt, step_size=3, gamma=0.5)
    plateau = S.ReduceLROnPlateau(opt, patience=0, factor=0.1)
    plateau.step(1.0)
    plateau.step(1.0)  # no improvement: reduced tenfold
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], [b * 0.1 for b in BASES], rtol=1e-12)
    for _ in range(3):
        step.step()  # epoch 3: halved, from the reduced rate
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], [b * 0.05 for b in BASES], rtol=1e-12)


def test_one_cycle_checks_its_arguments_before_changing_a_group():
    import pickle

    opt = optimizer()
    first = S.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    again = S.OneCycleLR(opt, max_lr=0.2, total_steps=10)  # made again (a notebook cell run twice): its rates
    assert first.optimizer is again.optimizer and opt.param_groups[0]["max_lr"] == 0.2
    assert pickle.loads(pickle.dumps(opt)).param_groups[0]["max_lr"] == 0.2  # schedules leave it picklable
    for make, match in [
        (lambda o: S.OneCycleLR(o, max_lr=[0.1], total_steps=10), r"max_lr must be one number or one per parameter "
                                                                   r"group \(2\), got 1"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), r"pct_start must be a number in \[0, 1\]"),
        (lambda o: S.OneCycleLR(o, max_lr=-1.0, total_steps=10), "max_lr must be finite and > 0"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, div_factor=0), "div_factor must be > 0"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=2.5), "total_steps must be >= 1 and an int"),
    ]:
        fresh = optimizer()
        with pytest.raises(ValueError, match=match):
            make(fresh)
        assert all("initial_lr" not in g and g["lr"] == b for g, b in zip(fresh.param_groups, BASES))  # untouched
    # A warm-up of one step (pct_start * total_steps = 1) starts at max_lr / div_factor, then anneals.
    opt = optimizer()
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1, div_factor=4.0)
    lrs = [opt.param_groups[0]["lr"]] + [(sched.step(), opt.param_groups[0]["lr"])[1] for _ in range(9)]
    assert lrs[0] == 0.25 and 0.9 < lrs[1] < 1.0 and all(a > b for a, b in zip(lrs[1:], lrs[2:]))


# ------------------------------------------------------------------- OneCycleLR's momentum

CYCLES = [{"anneal_strategy": a, "three_phase": t} for a in ("cos", "linear") for t in (False, True)]
MOMENTUM_OPTIMIZERS = [("SGD", {"momentum": 0.9}, "momentum"), ("Adam", {"betas": (0.9, 0.99)}, "betas"),
                       ("RMSprop", {}, "momentum")]


def momentum_of(group, key):
    return group["betas"][0] if key == "betas" else group["momentum"]


@pytest.mark.parametrize("cycle", CYCLES, ids=lambda c: f"{c['anneal_strategy']}-three_phase={c['three_phase']}")
@pytest.mark.parametrize("name, kwargs, key", MOMENTUM_OPTIMIZERS, ids=[o[0] for o in MOMENTUM_OPTIMIZERS])
def test_one_cycle_cycles_the_momentum(rng, name, kwargs, key, cycle):
    """The momentum (Adam's beta1) goes from max_momentum down to base_momentum as the rate
    rises and back up as it falls, over a whole cycle, as PyTorch's OneCycleLR moves it."""
    total = 40
    w0 = rng.standard_normal(6).astype(np.float32)
    grads = rng.standard_normal((total, 6)).astype(np.float32)
    p = nn.Parameter(ember.tensor(w0))
    opt = getattr(ember.optim, name)([p], lr=0.1, **kwargs)
    sched = S.OneCycleLR(opt, max_lr=0.5, total_steps=total, base_momentum=0.8, max_momentum=0.9, **cycle)
    got = []
    for g in grads:
        group = opt.param_groups[0]
        got.append((group["lr"], momentum_of(group, key)))
        p.grad = ember.tensor(g)
        opt.step()
        sched.step()  # the last one is step total_steps, PyTorch's last allowed
    want = [one_cycle_at(0.5, e, total, base_momentum=0.8, max_momentum=0.9, **cycle) for e in range(total)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if key == "betas":
        assert opt.param_groups[0]["betas"][1] == 0.99
    torch = pytest.importorskip("torch")
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = getattr(torch.optim, name)([tp], lr=0.1, **kwargs)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=total, base_momentum=0.8,
                                                 max_momentum=0.9, **cycle)
    theirs = []
    for g in grads:
        group = topt.param_groups[0]
        theirs.append((group["lr"], momentum_of(group, key)))
        tp.grad = torch.from_numpy(g)
        topt.step()
        tsched.step()
    np.testing.assert_allclose(got, theirs, rtol=1e-14)
    # Each step rounds the update to float32 at the weights' scale (here up to ~9) in an order of its
    # own: up to an ulp of the largest weight per step between Ember's and PyTorch's, for a weight
    # that has since returned near zero.
    theirs_w = tp.detach().numpy()
    np.testing.assert_allclose(p.detach().numpy(), theirs_w, rtol=1e-5,
                               atol=total * np.finfo(np.float32).eps * np.abs(theirs_w).max())


@pytest.mark.parametrize("stop", [1, 17])
def test_one_cycle_momentum_round_trips_and_resumes(stop):
    """A state_dict round trip (optimizer and schedule made anew, both loaded), and a schedule
    made with last_epoch over an optimizer loaded first, go on as an uninterrupted run."""

    def run(opt, sched, steps):
        out = []
        for _ in range(steps):
            out.append([(g["lr"], g["betas"][0]) for g in opt.param_groups])
            opt.step()
            sched.step()
        return out

    def adam():
        params = [nn.Parameter(ember.zeros(2)), nn.Parameter(ember.zeros(3))]
        return ember.optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.3}])

    kwargs = {"max_lr": [0.1, 0.03], "total_steps": 30, "base_momentum": [0.8, 0.7], "anneal_strategy": "linear",
              "three_phase": True}
    opt = adam()
    straight = run(opt, S.OneCycleLR(opt, **kwargs), 29)
    opt = adam()
    sched = S.OneCycleLR(opt, **kwargs)
    first = run(opt, sched, stop)
    fresh_opt = adam()
    fresh = S.OneCycleLR(fresh_opt, **kwargs)
    fresh_opt.load_state_dict(opt.state_dict())
    fresh.load_state_dict(sched.state_dict())
    np.testing.assert_allclose(first + run(fresh_opt, fresh, 29 - stop), straight, rtol=1e-15)
    loaded = adam()
    loaded.load_state_dict(opt.state_dict())  # the momentum bounds travel in the groups
    assert [(g["max_momentum"], g["base_momentum"]) for g in loaded.param_groups] == [(0.95, 0.8), (0.95, 0.7)]
    resumed = S.OneCycleLR(loaded, last_epoch=stop - 1, **kwargs)
    np.testing.assert_allclose(first + run(loaded, resumed, 29 - stop), straight, rtol=1e-15)


def test_one_cycle_chains_with_a_step_schedule():
    """OneCycleLR sets the rate and the momentum; a StepLR after it on the same optimizer halves
    the rate at its own steps (PyTorch's result) and leaves the momentum alone."""
    opt = optimizer()
    cycle = S.OneCycleLR(opt, max_lr=[0.1, 0.03], total_steps=20)
    halve = S.StepLR(opt, step_size=3, gamma=0.5)
    got = []
    for _ in range(19):
        got.append([(g["lr"], g["momentum"]) for g in opt.param_groups])
        opt.step()
        cycle.step()
        halve.step()
    want = []
    for e in range(19):
        factor = 0.5 if e and e % 3 == 0 else 1.0
        want.append([(lr * factor, m) for lr, m in (one_cycle_at(b, e, 20) for b in (0.1, 0.03))])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    torch = pytest.importorskip("torch")
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    topt = torch.optim.SGD([{"params": [params[0]], "lr": BASES[0]}, {"params": [params[1]], "lr": BASES[1]}],
                           momentum=0.9)
    tcycle = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=[0.1, 0.03], total_steps=20)
    thalve = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    theirs = []
    for _ in range(19):
        theirs.append([(g["lr"], g["momentum"]) for g in topt.param_groups])
        topt.step()
        tcycle.step()
        thalve.step()
    np.testing.assert_allclose(got, theirs, rtol=1e-12)


def test_one_cycle_momentum_arguments():
    class Plain(ember.optim.Optimizer):  # an optimizer with neither momentum nor betas
        @classmethod
        def _check_group(cls, group):
            pass

        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

    plain = Plain([nn.Parameter(ember.zeros(2))])
    with pytest.raises(ValueError, match="cycle_momentum needs an optimizer with momentum or betas; Plain has "):
        S.OneCycleLR(plain, max_lr=0.1, total_steps=10)
    assert "initial_lr" not in plain.param_groups[0]
    S.OneCycleLR(plain, max_lr=0.1, total_steps=10, cycle_momentum=False)
    opt = optimizer()
    S.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9] and "max_momentum" not in opt.param_groups[0]
    adam = ember.optim.Adam([nn.Parameter(ember.zeros(2))])
    for make, error, match in [
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="cosine"), ValueError,
         r"anneal_strategy must be 'cos' or 'linear', got 'cosine'"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, max_momentum=[0.9, 0.9, 0.9]), ValueError,
         r"max_momentum must be one number or one per parameter group \(2\), got 3"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, base_momentum=-0.1), ValueError,
         r"base_momentum -0.1 does not suit SGD: need momentum >= 0"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, cycle_momentum=1), TypeError,
         r"cycle_momentum must be True or False"),
        (lambda o: S.OneCycleLR(adam, max_lr=0.1, total_steps=10, max_momentum=1.0), ValueError,
         r"max_momentum 1.0 does not suit Adam: Adam: need betas in \[0, 1\)"),
    ]:
        fresh = optimizer()
        with pytest.raises(error, match=match):
            make(fresh)
        assert all("initial_lr" not in g and g["momentum"] == 0.9 for g in fresh.param_groups)  # untouched
    assert adam.param_groups[0]["betas"] == (0.9, 0.999) and "initial_lr" not in adam.param_groups[0]
