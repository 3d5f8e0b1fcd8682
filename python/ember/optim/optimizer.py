"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict (PyTorch's
protocol). Subclasses implement ``_step_fused`` (float32 parameters of a group, one native call)
and ``_update`` (any other dtype, the same formulas in the array's namespace), both changing the
parameters' arrays in place."""

from __future__ import annotations

import copy
import numbers

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..nn.module import Parameter
from ..tensor import Tensor


def _native(p) -> bool:
    """Whether the fused native step serves this parameter array (float32, C-contiguous)."""
    return p.dtype == np.float32 and p.flags.c_contiguous


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _real(group: dict, key: str, lo: float = 0.0, hi: float = float("inf"), hi_open: bool = False) -> None:
    """group[key] must be a real number in [lo, hi] (or [lo, hi) with hi_open), finite and within
    float32's range (the kernels compute with it in float32)."""
    v = group[key]
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{key} must be a number, got {type(v).__name__} {v!r}")
    if not abs(v) <= _FLOAT32_MAX:  # NaN fails this too
        raise ValueError(f"{key} must be finite and within float32's range, got {v!r}")
    if not (lo <= v < hi if hi_open else lo <= v <= hi):
        span = f">= {lo:g}" if hi == float("inf") else f"in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"need {key} {span}, got {v!r}")


def _flag(group: dict, key: str) -> None:
    if not isinstance(group[key], (bool, np.bool_)):
        raise TypeError(f"{key} must be True or False, got {group[key]!r}")


# Keys the learning-rate schedulers add to a parameter group (numbers >= 0).
_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr")


class Optimizer:
    """Subclasses declare their per-parameter state (``_state_arrays``: arrays shaped like the
    parameter; ``_state_counters``: integer counters) and check a parameter group's
    hyper-parameters in ``_check_group``, which both the constructor and ``load_state_dict``
    use, so a loaded state is held to the same rules as a new optimizer."""

    _state_arrays: tuple = ()
    _state_counters: tuple = ()
    _nonnegative_state: tuple = ()  # state arrays that are averages of squares

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            self.add_param_group(g)
        self.state = {}  # id(parameter) -> dict of arrays and counters

    @classmethod
    def _check_group(cls, group: dict) -> None:
        """Raise TypeError/ValueError naming the first bad hyper-parameter of ``group``."""
        raise NotImplementedError

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
        self._check_group(full)
        self.param_groups.append(full)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(backend.namespace(p.grad._data).zeros_like(p.grad._data))

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient: per parameter group, the float32
        ones in one fused native call (one kernel launch on a GPU), the others through the
        same formulas in their array namespace."""
        loss = closure() if closure is not None else None
        # Every group's hyper-parameters (a scheduler or a user may have set them) before any
        # parameter changes: a bad one in a later group must not leave a step half done.
        for i, g in enumerate(self.param_groups):
            try:
                self._check_group(g)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__}.step: param_groups[{i}]: {exc}") from None
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state_of(p) for p in params]
            fused = [i for i, p in enumerate(params) if _native(p._data)]
            others = set(range(len(params))) - set(fused)
            if fused:
                self._step_fused([params[i]._data for i in fused], [params[i].grad._data for i in fused],
                                 [states[i] for i in fused], g)
            for i in sorted(others):
                self._update(params[i]._data, params[i].grad._data, states[i], g)
            for p in params:
                p._bump()
        return loss

    def _state_of(self, p) -> dict:
        """p's state, its arrays on p's device (state follows a parameter that was moved)."""
        state = self.state.setdefault(id(p), {})
        dev = backend.device_of(p._data)
        for k, v in state.items():
            if backend.is_array(v) and backend.device_of(v) is not dev:
                state[k] = dev.asarray(v)
        return state

    def _step_fused(self, params, grads, states, group) -> None:
        """Update float32 parameters (arrays) in one native call."""
        raise NotImplementedError

    def _update(self, p, grad, state, group) -> None:
        """Update one parameter (an array of another dtype) with the same formulas."""
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
        """Restore a ``state_dict``. The whole of it is checked first -- the groups' sizes and
        hyper-parameters, every state entry's name, shape, dtype and counter -- and nothing
        changes unless all of it is right (ValueError or TypeError naming the entry)."""
        self._install_state(self.check_state_dict(state_dict))

    def _install_state(self, checked) -> None:
        """Install what ``check_state_dict`` returned (cannot fail)."""
        state, groups = checked
        self.state = state
        for mine, saved in zip(self.param_groups, groups):
            mine.update(saved)

    def check_state_dict(self, state_dict: dict):
        """The checks of ``load_state_dict``: returns (state by parameter, group settings)
        ready to install, or raises naming the first problem."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        groups = state_dict["param_groups"]
        if (not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups)
                or not all(isinstance(g, dict) and isinstance(g.get("params"), (list, tuple)) for g in groups)
                or any(len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups))):
            saved = [len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), (list, tuple))
                     else "?" for g in groups] if isinstance(groups, (list, tuple)) else groups
            raise ValueError(f"{name}.load_state_dict: the saved parameter groups do not match this optimizer's "
                             f"({saved} vs {[len(g['params']) for g in self.param_groups]} parameters)")
        settings = []
        for i, (mine, saved) in enumerate(zip(self.param_groups, groups)):
            extra = set(saved) - set(mine) - set(_SCHEDULER_KEYS)
            if extra:
                raise ValueError(f"{name}.load_state_dict: param_groups[{i}] has unknown keys {sorted(extra)}")
            entry = {k: v for k, v in saved.items() if k != "params"}
            for key in _SCHEDULER_KEYS:
                if key in entry:
                    try:
                        _real(entry, key)
                    except (TypeError, ValueError) as exc:
                        raise type(exc)(f"{name}.load_state_dict: param_groups[{i}]: {exc}") from None
            try:
                self._check_group({**mine, **entry})
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}.load_state_dict: param_groups[{i}]: {exc}") from None
            settings.append(entry)
        params = [p for g in self.param_groups for p in g["params"]]
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise ValueError(f"{name}.load_state_dict: 'state' must be a dict")
        state = {}
        for index, entries in saved_state.items():
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(params):
                raise ValueError(f"{name}.load_state_dict: state index {index!r} is not a parameter index in "
                                 f"[0, {len(params)})")
            if not isinstance(entries, dict):
                raise ValueError(f"{name}.load_state_dict: state[{index}] must be a dict")
            p = params[int(index)]
            mine = {}
            for key, value in entries.items():
                where = f"{name}.load_state_dict: state[{index}][{key!r}]"
                if key in self._state_arrays:
                    arr = value._data if isinstance(value, Tensor) else (
                        value if backend.is_array(value) else np.asarray(value))
                    if arr.shape != p.shape:
                        raise ValueError(f"{where} has shape {arr.shape}; its parameter has {p.shape}")
                    if arr.dtype.kind != "f":
                        raise ValueError(f"{where} holds {arr.dtype} values; its parameter is {p.dtype}")
                    value = backend.device_of(p._data).asarray(arr, p.dtype).copy()
                    if not bool(backend.device_of(value).xp.isfinite(value).all()):
                        raise ValueError(f"{where} holds NaN or infinite values")
                    if key in self._nonnegative_state and bool((value < 0).any()):
                        raise ValueError(f"{where} holds negative values; it is an average of squares")
                    mine[key] = value
                elif key in self._state_counters:
                    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                        raise ValueError(f"{where} must be an int >= 0, got {value!r}")
                    mine[key] = int(value)
                else:
                    raise ValueError(f"{where}: {name} keeps no state called {key!r}")
            state[id(p)] = mine
        return state, settings
