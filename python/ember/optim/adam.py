"""Adam and AdamW (with AMSGrad), PyTorch's updates: the float32 parameters of a group in one
fused native call, other dtypes through the same formulas in their array namespace."""

from __future__ import annotations

import math
import numbers

from .. import backend
from ..kernels import optim_step
from .optimizer import Optimizer, _flag, _real


class Adam(Optimizer):
    """Adam; ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2), as PyTorch's Adam."""

    _decoupled = False

    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_counters = ("step",)
    _nonnegative_state = ("exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "maximize": maximize})

    @classmethod
    def _check_group(cls, group: dict) -> None:
        for key in ("lr", "eps", "weight_decay"):
            _real(group, key)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        if not all(isinstance(b, numbers.Real) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{cls.__name__}: need betas in [0, 1), got {tuple(betas)!r}")
        group["betas"] = tuple(betas)
        _flag(group, "amsgrad")
        _flag(group, "maximize")

    def _init(self, p, state, group) -> None:
        if not state:
            xp = backend.namespace(p)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:  # turned on now: the running max starts here
            state["max_exp_avg_sq"] = state["exp_avg_sq"].copy()
        state["step"] += 1

    def _step_fused(self, params, grads, states, group) -> None:
        for p, s in zip(params, states):
            self._init(p, s, group)
        b1, b2 = group["betas"]
        optim_step.adam_step(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                             [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None,
                             [s["step"] for s in states], lr=group["lr"], beta1=b1, beta2=b2, eps=group["eps"],
                             weight_decay=group["weight_decay"], decoupled=self._decoupled,
                             maximize=group["maximize"])

    def _update(self, p, grad, state, group) -> None:
        self._init(p, state, group)
        xp = backend.namespace(p)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        f = p.dtype.type
        g = -grad if group["maximize"] else grad
        if wd:
            if self._decoupled:
                p *= f(1 - lr * wd)
            else:
                g = g + f(wd) * p
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= f(b1)
        m += f(1 - b1) * g
        v *= f(b2)
        v += f(1 - b2) * (g * g)
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        bias1, bias2 = 1 - b1**t, 1 - b2**t
        denom = xp.sqrt(v) / f(math.sqrt(bias2)) + f(eps)
        p -= f(lr / bias1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the update)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
