"""RMSprop (PyTorch's update, with momentum and the centered variant)."""

from __future__ import annotations

from .. import backend
from .optimizer import Optimizer, _flag, _real


class RMSprop(Optimizer):
    _state_arrays = ("square_avg", "momentum_buffer", "grad_avg")
    _state_counters = ("step",)
    _nonnegative_state = ("square_avg",)

    @classmethod
    def _check_group(cls, group: dict) -> None:
        for key in ("lr", "eps", "weight_decay", "momentum"):
            _real(group, key)
        _real(group, "alpha", 0.0, 1.0)
        _flag(group, "centered")
        _flag(group, "maximize")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                                  "momentum": momentum, "centered": centered, "maximize": maximize})

    def _step_fused(self, params, grads, states, group) -> None:
        for p, g, s in zip(params, grads, states):  # no native RMSprop step: the formulas, per parameter
            self._update(p, g, s, group)

    def _update(self, p, grad, state, group) -> None:
        xp = backend.namespace(p)
        f = p.dtype.type
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + f(group["weight_decay"]) * p
        if not state:
            state.update(step=0, square_avg=xp.zeros_like(p))
        # A buffer starts at zero on the first step that needs it (momentum or centered may be
        # turned on after the first step, as OneCycleLR does with momentum).
        for key, needed in (("momentum_buffer", group["momentum"]), ("grad_avg", group["centered"])):
            if needed and key not in state:
                state[key] = xp.zeros_like(p)
        state["step"] += 1
        sq = state["square_avg"]
        sq *= f(group["alpha"])
        sq += f(1 - group["alpha"]) * g * g
        if group["centered"]:
            ga = state["grad_avg"]
            ga += f(1 - group["alpha"]) * (g - ga)
            avg = xp.sqrt(sq - ga * ga) + f(group["eps"])
        else:
            avg = xp.sqrt(sq) + f(group["eps"])
        if group["momentum"]:
            buf = state["momentum_buffer"]
            buf *= f(group["momentum"])
            buf += g / avg
            p -= f(group["lr"]) * buf
        else:
            p -= f(group["lr"]) * g / avg
