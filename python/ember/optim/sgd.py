"""SGD with momentum, dampening, Nesterov and weight decay (PyTorch's update): one fused native
pass per float32 parameter, NumPy for other dtypes."""

from __future__ import annotations

import numpy as np

from .. import _C
from .optimizer import Optimizer, _flag, _native, _real


class SGD(Optimizer):
    _state_arrays = ("momentum_buffer",)

    @classmethod
    def _check_group(cls, group: dict) -> None:
        for key in ("lr", "momentum", "weight_decay"):
            _real(group, key)
        _real(group, "dampening", -float("inf"))
        _flag(group, "nesterov")
        _flag(group, "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize})

    def _update(self, p, grad, state, group) -> None:
        mu = group["momentum"]
        if _native(p):  # one fused pass (ember._C.sgd_step)
            first = mu != 0 and "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = np.empty_like(p)
            buf = state.get("momentum_buffer")
            _C.sgd_step([p], [np.ascontiguousarray(grad, np.float32)], None if buf is None else [buf], group["lr"],
                        mu, group["dampening"], group["weight_decay"], group["nesterov"], group["maximize"], first)
            return
        d = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            d = d + p.dtype.type(group["weight_decay"]) * p
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, copy=True)
            else:
                buf *= p.dtype.type(mu)
                buf += p.dtype.type(1 - group["dampening"]) * d
            d = d + p.dtype.type(mu) * buf if group["nesterov"] else buf
        p -= p.dtype.type(group["lr"]) * d
