"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict (PyTorch's
protocol). Subclasses implement ``_update(p, grad, state, group)``, which changes the
parameter's array in place."""

from __future__ import annotations

import copy

import numpy as np

from ..autograd import no_grad
from ..nn.module import Parameter
from ..tensor import Tensor


def _native(p) -> bool:
    """Whether the fused native step serves this parameter array (float32, C-contiguous)."""
    return p.dtype == np.float32 and p.flags.c_contiguous


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            self.add_param_group(g)
        self.state = {}  # id(parameter) -> dict of arrays and counters

    def add_param_group(self, group: dict) -> None:
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: parameter {i} of group {len(self.param_groups)} is a "
                                f"{type(p).__name__}, not a Parameter")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
        full = dict(self.defaults)
        full.update(group)
        full["params"] = ps
        self.param_groups.append(full)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(np.zeros_like(p.grad._data))

    @no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                self._update(p._data, p.grad._data, self.state.setdefault(id(p), {}), g)
                p._bump()
        return loss

    def _update(self, p, grad, state, group) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, as PyTorch."""
        index, groups = {}, []
        for g in self.param_groups:
            entry = {k: v for k, v in g.items() if k != "params"}
            entry["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {index[k]: copy.deepcopy(v) for k, v in self.state.items() if k in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved parameter groups do not match this optimizer's "
                             f"({[len(g['params']) for g in groups]} vs "
                             f"{[len(g['params']) for g in self.param_groups]} parameters)")
        params = [p for g in self.param_groups for p in g["params"]]
        self.state = {id(params[i]): copy.deepcopy(s) for i, s in state_dict["state"].items()}
        for mine, saved in zip(self.param_groups, groups):
            mine.update({k: v for k, v in saved.items() if k != "params"})
