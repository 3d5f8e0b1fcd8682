"""SGD with momentum, dampening, Nesterov and weight decay (PyTorch's update): the float32
parameters of a group in one fused native call, other dtypes through the same formulas in their
array namespace."""

from __future__ import annotations

from .. import backend
from ..kernels import optim_step
from .optimizer import Optimizer, _flag, _real


class SGD(Optimizer):
    """SGD, PyTorch's update. ``dampening`` must be >= 0 (PyTorch also takes a negative one; the
    native step, and so Ember for every dtype, does not)."""

    _state_arrays = ("momentum_buffer",)

    @classmethod
    def _check_group(cls, group: dict) -> None:
        for key in ("lr", "momentum", "dampening", "weight_decay"):
            _real(group, key)
        _flag(group, "nesterov")
        _flag(group, "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize})

    def _step_fused(self, params, grads, states, group) -> None:
        mu = group["momentum"]
        kw = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")}
        if not mu:
            optim_step.sgd_step(params, grads, None, first=False, **kw)
            return
        # Parameters whose momentum buffer the step creates (PyTorch's first step copies the
        # update into it) go in their own call.
        new = [i for i, s in enumerate(states) if "momentum_buffer" not in s]
        old = [i for i, s in enumerate(states) if "momentum_buffer" in s]
        for first, idx in ((True, new), (False, old)):
            if not idx:
                continue
            for i in idx:
                if first:
                    states[i]["momentum_buffer"] = backend.namespace(params[i]).empty_like(params[i])
            optim_step.sgd_step([params[i] for i in idx], [grads[i] for i in idx],
                                [states[i]["momentum_buffer"] for i in idx], first=first, **kw)

    def _update(self, p, grad, state, group) -> None:
        xp = backend.namespace(p)
        mu = group["momentum"]
        d = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            d = d + p.dtype.type(group["weight_decay"]) * p
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.array(d, copy=True)
            else:
                buf *= p.dtype.type(mu)
                buf += p.dtype.type(1 - group["dampening"]) * d
            d = d + p.dtype.type(mu) * buf if group["nesterov"] else buf
        p -= p.dtype.type(group["lr"]) * d
