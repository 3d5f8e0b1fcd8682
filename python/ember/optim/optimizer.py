"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict (PyTorch's
protocol). Subclasses implement ``_step_fused`` (float32 parameters of a group on one device, one
native call) and ``_update`` (any other dtype, the same formulas in the array's namespace), both
changing the parameters' arrays and the step's working copy of their state in place."""

from __future__ import annotations

import copy
import numbers

import numpy as np

from .. import backend
from ..autograd import enable_grad, no_grad
from ..autograd.function import _memory_owner
from ..nn.module import Parameter
from ..tensor import Tensor


def _native(p) -> bool:
    """Whether the fused native step serves this parameter array (float32, C-contiguous,
    aligned)."""
    return p.dtype == np.float32 and p.flags.c_contiguous and getattr(p.flags, "aligned", True)


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
_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _check_gradient(p) -> None:
    """Raise TypeError/ValueError if the step cannot update parameter ``p`` with its gradient."""
    grad = p.grad
    if not isinstance(grad, Tensor):
        raise TypeError(f"grad must be a Tensor, got {type(grad).__name__}")
    g, a = grad._data, p._data
    if type(g) is not type(a) and backend.device_of(g) is not backend.device_of(a):
        raise ValueError(f"grad is on device '{backend.device_of(g).name}' but the parameter is on "
                         f"'{backend.device_of(a).name}'")
    if g.dtype != a.dtype:
        raise TypeError(f"grad has dtype {g.dtype} but the parameter has {a.dtype}")
    if g.shape != a.shape:
        raise ValueError(f"grad has shape {tuple(g.shape)} but the parameter has {tuple(a.shape)}")
    if not getattr(a.flags, "writeable", True):
        raise ValueError("the parameter is read-only")


def _span(a) -> tuple:
    """(first byte, one past the last byte) of the memory array ``a`` spans."""
    interface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    lo = hi = interface["data"][0]
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi + a.itemsize


def _first_overlap(arrays):
    """Indices of two of ``arrays`` (all on one device) that share memory, or None: the spans of
    the arrays over one owner's memory (the same array twice, views of one array) compared."""
    owners = [_memory_owner(a) for a in arrays]
    if len(set(map(id, owners))) == len(owners):  # each over memory of its own: the usual case
        return None
    by_owner = {}
    for i, (a, owner) in enumerate(zip(arrays, owners)):
        if a.size:
            by_owner.setdefault(id(owner), []).append(i)
    for idx in by_owner.values():
        reach = None  # (end, index) of the span reaching furthest so far, in order of start
        for (lo, hi), i in sorted((_span(arrays[i]), i) for i in idx):
            if reach is not None and lo < reach[0]:
                return reach[1], i
            if reach is None or hi > reach[0]:
                reach = (hi, i)
    return None


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
        """One update of every parameter that has a gradient: per parameter group and device,
        the float32 ones in one fused native call (one kernel launch on a GPU), the others
        through the same formulas in their array namespace.

        ``closure`` (optional) re-evaluates the model and returns the loss; it runs first, with
        autograd on, so it may call ``backward``, and its result is returned.

        A step is all or nothing: every group's hyper-parameters, and every gradient against its
        parameter (a Tensor of the parameter's dtype, shape and device; the parameter writable;
        the float32 arrays of one native call apart in memory), are checked before anything
        changes, so a step that raises leaves the parameters and the optimizer's state as they
        were."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        plan = self._plan_step()
        for g, params, states, fused in plan:
            for idx in fused:
                self._step_fused([params[i]._data for i in idx], [params[i].grad._data for i in idx],
                                 [states[i] for i in idx], g)
            native = {i for idx in fused for i in idx}
            for i, p in enumerate(params):
                if i not in native:
                    self._update(p._data, p.grad._data, states[i], g)
        for _, params, states, _ in plan:
            for p, s in zip(params, states):
                self.state[id(p)] = s
                p._bump()
        return loss

    def _plan_step(self) -> list:
        """Check the whole step before any of it is made (TypeError/ValueError naming the group
        or parameter). Per group: (group, its parameters with a gradient, a working copy of each
        one's state, which ``step`` installs once every update has succeeded, and the indices
        of the parameters of each native call: the float32 ones, by device)."""
        name = type(self).__name__
        # Every group's hyper-parameters (a scheduler or a user may have set them) first.
        for i, g in enumerate(self.param_groups):
            try:
                self._check_group(g)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}.step: param_groups[{i}]: {exc}") from None
        plan = []
        for i, g in enumerate(self.param_groups):
            where = f"{name}.step: param_groups[{i}]"
            numbers = [j for j, p in enumerate(g["params"]) if p.grad is not None]
            params = [g["params"][j] for j in numbers]
            by_device = {}
            for k, (j, p) in enumerate(zip(numbers, params)):
                try:
                    _check_gradient(p)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{where}['params'][{j}]: {exc}") from None
                if _native(p._data):
                    by_device.setdefault(backend.device_of(p._data), []).append(k)
            for idx in by_device.values():  # a native call refuses arrays that share memory
                pair = _first_overlap([params[k]._data for k in idx] + [params[k].grad._data for k in idx])
                if pair is not None:
                    a, b = (f"['params'][{numbers[idx[m % len(idx)]]}]{'.grad' if m >= len(idx) else ''}"
                            for m in pair)
                    raise ValueError(f"{where}: {a} and {b} share memory; the fused step needs the float32 "
                                     "parameters and gradients of a group apart")
            plan.append((g, params, [self._working_state(p) for p in params], list(by_device.values())))
        return plan

    def _working_state(self, p) -> dict:
        """A copy of p's state for one step, its arrays on p's device (state follows a
        parameter that was moved)."""
        dev = backend.device_of(p._data)
        return {k: dev.asarray(v) if not isinstance(v, dev.array_types) and backend.is_array(v) else v
                for k, v in self.state.get(id(p), {}).items()}

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
