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
