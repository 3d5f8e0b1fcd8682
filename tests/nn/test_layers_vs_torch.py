"""Normalisation, embedding and loss layers, RMSprop, the learning-rate schedules and gradient
clipping against PyTorch (skipped when it is absent), plus their argument checks."""

import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def both(rng, shape, requires_grad=True, scale=1.0):
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    return ember.tensor(a, requires_grad=requires_grad), torch.from_numpy(a.copy()).requires_grad_(requires_grad)


def close(mine, theirs, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(mine.detach().cpu().numpy() if hasattr(mine, "detach") else mine),
                               theirs.detach().cpu().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("cls, shape", [("BatchNorm1d", (8, 5)), ("BatchNorm1d", (4, 5, 7)), ("BatchNorm2d", (4, 5, 6, 3))])
def test_batchnorm(device, rng, cls, shape):
    m, tm = getattr(nn, cls)(5, momentum=0.2), getattr(torch.nn, cls)(5, momentum=0.2)
    for _ in range(3):
        x, tx = both(rng, shape)
        y, ty = m(x), tm(tx)
        close(y, ty, rtol=1e-4, atol=1e-5)
        g = rng.standard_normal(shape).astype(np.float32)
        y.backward(ember.tensor(g))
        ty.backward(torch.from_numpy(g))
        close(x.grad, tx.grad, rtol=1e-4, atol=1e-5)
    close(m.weight.grad, tm.weight.grad, rtol=1e-4, atol=1e-4)
    close(m.running_mean, tm.running_mean)
    close(m.running_var, tm.running_var, rtol=1e-5)
    assert m.state_dict()["num_batches_tracked"].item() == 3
    m.eval(), tm.eval()
    x, tx = both(rng, shape)
    close(m(x), tm(tx), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(N, 5"):
        m(ember.zeros(2, 4))


def test_layernorm_and_embedding(device, rng):
    ln, tln = nn.LayerNorm((4, 3)), torch.nn.LayerNorm((4, 3))
    x, tx = both(rng, (2, 4, 3))
    y, ty = ln(x), tln(tx)
    close(y, ty, rtol=1e-5, atol=1e-6)
    y.sum().backward(), (ty * 1).sum().backward()
    close(x.grad, tx.grad, rtol=1e-4, atol=1e-5)
    emb, temb = nn.Embedding(10, 3), torch.nn.Embedding(10, 3)
    emb.load_state_dict({"weight": temb.weight.detach().cpu().numpy()})
    idx = np.array([[1, 2, 2], [9, 1, 1]])
    e, te = emb(ember.tensor(idx)), temb(torch.from_numpy(idx))
    close(e, te)
    (e * e).sum().backward(), (te * te).sum().backward()
    close(emb.weight.grad, temb.weight.grad)  # repeated rows add up
    with pytest.raises(ValueError, match="index out of range"):
        emb(ember.tensor([10]))


def test_losses(device, rng):
    logits, tlogits = both(rng, (6, 4))
    target = np.array([0, 3, 1, -100, 2, 2])
    w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    for reduction in ("mean", "sum", "none"):
        mine = nn.NLLLoss(weight=w, reduction=reduction)(logits.log_softmax(1), ember.tensor(target))
        theirs = torch.nn.NLLLoss(weight=torch.from_numpy(w), reduction=reduction)(tlogits.log_softmax(1),
                                                                                   torch.from_numpy(target))
        close(mine, theirs, rtol=1e-5, atol=1e-6)
    x, tx = both(rng, (5, 3), scale=3.0)
    y = (rng.random((5, 3)) > 0.5).astype(np.float32)
    pw = np.array([1.0, 2.0, 0.5], np.float32)
    loss = nn.BCEWithLogitsLoss(pos_weight=pw)(x, y)
    tloss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pw))(tx, torch.from_numpy(y))
    close(loss, tloss, rtol=1e-5)
    loss.backward(), tloss.backward()
    close(x.grad, tx.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9, "weight_decay": 0.01}, {"centered": True, "alpha": 0.9}])
def test_rmsprop(device, rng, kwargs):
    w0 = rng.standard_normal(7).astype(np.float32)
    p, tp = nn.Parameter(ember.tensor(w0)), torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt, topt = ember.optim.RMSprop([p], lr=0.01, **kwargs), torch.optim.RMSprop([tp], lr=0.01, **kwargs)
    for _ in range(8):
        g = rng.standard_normal(7).astype(np.float32)
        p.grad, tp.grad = ember.tensor(g), torch.from_numpy(g)
        opt.step(), topt.step()
    close(p, tp, rtol=1e-5, atol=1e-6)


SCHEDULES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [2, 5], "gamma": 0.1}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.001}),
    ("LinearLR", {"start_factor": 0.25, "total_iters": 4}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 12}),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_pytorch(device, name, kwargs):
    p, tp = nn.Parameter(ember.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt, topt = ember.optim.SGD([p], lr=0.1), torch.optim.SGD([tp], lr=0.1)
    sched = getattr(ember.optim.lr_scheduler, name)(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for _ in range(11):
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-6, atol=1e-12)
        opt.step(), topt.step()
        sched.step(), tsched.step()


def test_reduce_on_plateau_matches_pytorch(device):
    p, tp = nn.Parameter(ember.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt, topt = ember.optim.SGD([p], lr=1.0), torch.optim.SGD([tp], lr=1.0)
    s = ember.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1, factor=0.5, cooldown=1)
    for metric in [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8, 0.9]:
        s.step(metric), ts.step(metric)
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm(device, rng, norm_type):
    ps, tps = [], []
    for shape in [(3, 4), (5,)]:
        a = rng.standard_normal(shape).astype(np.float32)
        g = (rng.standard_normal(shape) * 3).astype(np.float32)
        p, tp = nn.Parameter(ember.tensor(a)), torch.nn.Parameter(torch.from_numpy(a.copy()))
        p.grad, tp.grad = ember.tensor(g), torch.from_numpy(g.copy())
        ps.append(p), tps.append(tp)
    n = nn.utils.clip_grad_norm_(ps, 1.5, norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tps, 1.5, norm_type)
    np.testing.assert_allclose(n.item(), tn.item(), rtol=1e-5)
    for p, tp in zip(ps, tps):
        close(p.grad, tp.grad, rtol=1e-5, atol=1e-6)
