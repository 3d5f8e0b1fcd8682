"""Module and Parameter: PyTorch's container protocol (parameters, buffers, children, train /
eval, state_dict with PyTorch's key names)."""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..kernels._common import is_bf16
from ..tensor import Tensor


def _equal(a, b) -> bool:
    """Whether two state_dict values hold the same shape and numbers."""
    a, b = (v._host() if isinstance(v, Tensor) else v for v in (a, b))
    a, b = (backend.device_of(v).to_host(v) if backend.is_array(v) else np.asarray(v) for v in (a, b))
    return a.shape == b.shape and bool(np.array_equal(a.astype(np.float64), b.astype(np.float64)))


def _same_kind(a, b) -> bool:
    """Whether values of dtype a may be loaded into storage of dtype b: floats (bf16 among them)
    into floats (cast, as PyTorch does), integers into integers, booleans into booleans."""
    kinds = {"f": "f", "i": "i", "u": "i", "b": "b"}

    def kind(dtype):
        return "f" if is_bf16(np.dtype(dtype)) else kinds.get(np.dtype(dtype).kind)

    return kind(a) == kinds.get(np.dtype(b).kind, "?")


def saved_modes(*modules):
    """Each module's own ``training`` flag now (every module below ``modules``); calling the
    returned function puts them all back -- a frozen BatchNorm in evaluation mode inside a
    training model stays in evaluation mode, where ``model.train(was_training)`` would not."""
    flags = [(m, m.training) for module in modules for m in module.modules()]

    def restore() -> None:
        for m, mode in flags:
            object.__setattr__(m, "training", mode)

    return restore


class Parameter(Tensor):
    """A tensor that is a module's learnable weight: requires grad, and is registered when set
    as a module attribute."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data._data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _recording_init(init):
    """``init`` that first remembers the arguments the module is made with (the outermost
    ``__init__`` of a chain of ``super().__init__`` calls records them)."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:
            object.__setattr__(self, "_init_args", (args, kwargs))
        init(self, *args, **kwargs)

    return __init__


class Module:
    """Base class of layers and models. Subclasses set parameters, buffers and sub-modules as
    attributes in ``__init__`` and define ``forward``.

    A module remembers the arguments it was made with: ``get_config`` returns them, and with its
    class registered (``ember.nn.register``) a checkpoint records what rebuilds the model
    (``ember.load_model``)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls.__dict__["__init__"])

    def get_config(self) -> dict:
        """The arguments this module was made with, by name (``*args`` under its own name), from
        which ``type(self)(**config)`` makes it again. Override it when the constructor takes
        what a file cannot hold; the values must be JSON values (checked when recorded)."""
        args, kwargs = self.__dict__.get("_init_args", ((), {}))
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        config = dict(bound.arguments)
        del config[next(iter(config))]  # self
        return config

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        """PyTorch's rules: a Parameter or a Module is registered under ``name`` (in place of
        whatever had it); a parameter's or a child's name takes only another of its kind or None,
        a buffer's a Tensor or None (a TypeError otherwise, the module unchanged); anything else
        is a plain attribute."""
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() before setting "
                                 f"attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter) or (isinstance(value, Module) and name not in params):
            target = params if isinstance(value, Parameter) else modules
            for store in (params, buffers, modules):
                if store is not target:
                    store.pop(name, None)
            self.__dict__.pop(name, None)
            target[name] = value  # a name already there keeps its place (a Sequential's order)
            return
        for store, kind, expected in ((params, "parameter", "a Parameter"), (modules, "child module", "a Module"),
                                      (buffers, "buffer", "a Tensor")):
            if name in store:
                if value is not None and not (store is buffers and isinstance(value, Tensor)):
                    raise TypeError(f"cannot assign {type(value).__name__} as {kind} {name!r} ({expected} or None "
                                    "expected)")
                store[name] = value  # None keeps the name registered, as in PyTorch
                return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        """``del module.name`` unregisters a parameter, buffer or sub-module (it leaves the
        state_dict), or deletes a plain attribute."""
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def _check_new_name(self, name, what: str, store) -> None:
        """A name ``register_buffer``/``register_parameter`` may take: a non-empty str without a
        dot, not already another kind of attribute (PyTorch's rules)."""
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{what} name must be non-empty and contain no '.', got {name!r}")
        taken = name in self.__dict__ or hasattr(type(self), name) or any(
            name in other for other in (self._parameters, self._buffers, self._modules) if other is not store)
        if taken:
            raise KeyError(f"attribute {name!r} already exists in {type(self).__name__}")

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """A tensor that is state but not a parameter (running statistics): saved in state_dict."""
        self._check_new_name(name, "buffer", self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register buffer {name!r}: a Tensor or None expected, got {type(tensor).__name__}")
        self._buffers[name] = tensor

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_new_name(name, "parameter", self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register parameter {name!r}: a Parameter or None expected, got "
                            f"{type(param).__name__} (wrap a tensor in nn.Parameter)")
        self._parameters[name] = param

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = ""):
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, m = stack.pop(0)
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack[0:0] = [((f"{name}.{k}" if name else k), c) for k, c in m._modules.items() if c is not None]

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_children(self):
        return ((k, m) for k, m in self._modules.items() if m is not None)

    def named_parameters(self, prefix: str = ""):
        seen = set()
        for mname, m in self.named_modules(prefix):
            for k, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{k}" if mname else k), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix: str = ""):
        for mname, m in self.named_modules(prefix):
            for k, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{k}" if mname else k), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def apply(self, fn):
        for m in list(self.modules())[::-1]:
            fn(m)
        return self

    # ---------------------------------------------------------------- modes and gradients
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be True or False, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------- devices
    @no_grad()
    def to(self, device):
        """Move every parameter and buffer (and any gradient) to ``device``, in place; returns
        the module. Parameters keep their identity, so an optimizer built before the move still
        holds them (its state follows on its next step)."""
        dev = backend.get(device)
        for t in list(self.parameters()) + list(self.buffers()):
            if backend.device_of(t._data) is not dev:
                t._data = dev.asarray(t._data)
                t._bump()
                if t.grad is not None:
                    t.grad = Tensor._wrap(dev.asarray(t.grad._data))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def requires_grad_(self, requires_grad: bool = True):
        """Whether autograd computes gradients for every parameter of this module (``False``
        freezes it: fine-tuning only the rest of a model); returns the module."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(backend.namespace(p.grad._data).zeros_like(p.grad._data))

    # ---------------------------------------------------------------- state
    def state_dict(self) -> OrderedDict:
        """Parameters and buffers by PyTorch's dotted names and in its order (each module's
        parameters, then its buffers), as tensors sharing their storage. A tensor shared by
        two modules (tied weights) appears once, under its first name; ``load_state_dict``
        also takes it under the others, as PyTorch writes them."""
        return OrderedDict((name, t.detach()) for name, t in self._named_state())

    def _named_state(self):
        """(name, tensor) of every parameter and buffer, each tensor once under its first name,
        in PyTorch's order: what ``state_dict`` holds."""
        seen = set()
        for mname, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for k, t in store.items():
                    if t is not None and id(t) not in seen:
                        seen.add(id(t))
                        yield (f"{mname}.{k}" if mname else k), t

    def _aliases(self) -> dict:
        """The names a tied tensor has beyond its first: alias -> first name (what PyTorch's
        state_dict repeats)."""
        first, aliases = {}, {}

        def visit(prefix, module, path):
            for store in (module._parameters, module._buffers):
                for k, t in store.items():
                    if t is not None:
                        name = prefix + k
                        if id(t) in first and first[id(t)] != name:
                            aliases.setdefault(name, first[id(t)])
                        first.setdefault(id(t), name)
            for k, child in module._modules.items():
                if child is not None and id(child) not in path:  # a shared child again, a cycle never
                    visit(f"{prefix}{k}.", child, path | {id(child)})

        visit("", self, {id(self)})
        return aliases

    @no_grad()
    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values into this module's parameters and buffers. Everything is checked before
        anything is copied: a key this module lacks, a key it has that is missing, a shape that
        differs, a value of another kind (integer bits into a float weight, say) or one a layer
        refuses (see ``check_loaded_state``) is an error listing them all, and the module is
        left as it was. With ``strict=False`` missing and unexpected keys are allowed. Returns
        (missing, unexpected)."""
        plan, missing, unexpected = self.plan_load_state_dict(state_dict, strict)
        self._apply_load_plan(plan)
        return missing, unexpected

    @staticmethod
    @no_grad()
    def _apply_load_plan(plan) -> None:
        """Copy what ``plan_load_state_dict`` checked (cannot fail)."""
        for t, arr in plan:
            t._data[...] = arr
            t._bump()

    def plan_load_state_dict(self, state_dict, strict: bool = True):
        """The checks of ``load_state_dict`` without the copy: returns ``(plan, missing,
        unexpected)``, plan being the (tensor, array) pairs the load would copy, or raises
        ValueError naming every problem. Lets a loader check a whole file before changing
        anything."""
        own = OrderedDict(self._named_state())
        aliases = self._aliases()
        state_dict = dict(state_dict)
        shapes, wrong, plan, arrays = [], [], [], {}
        for alias, name in aliases.items():  # a tied tensor under its other names: the same values
            if alias not in state_dict:
                continue
            value = state_dict.pop(alias)
            if name not in state_dict:
                state_dict[name] = value
            elif not _equal(value, state_dict[name]):
                wrong.append(f"{alias}: is tied to {name} here, but the two hold different values")
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else (v if backend.is_array(v) else np.asarray(v))
            if arr.shape != t.shape:
                shapes.append(f"{k}: expected shape {t.shape}, got {arr.shape}")
            elif not _same_kind(arr.dtype, t.dtype):
                wrong.append(f"{k}: expected {t.dtype} values, got {arr.dtype}")
            elif t.dtype.kind in "iu" and arr.dtype != t.dtype and arr.size and (
                    arr.min() < np.iinfo(t.dtype).min or arr.max() > np.iinfo(t.dtype).max):
                wrong.append(f"{k}: values outside the range of {t.dtype}")
            else:
                # bf16 widens to float32 exactly, here on the host (device arrays may lack bf16).
                host = arr.astype(np.float32) if is_bf16(arr) else arr
                # The values as they would be stored: the layers' checks see exactly those.
                dev = backend.device_of(host)
                with dev.errstate(over="ignore"):  # an overflow is reported below
                    stored = host.astype(t.dtype, copy=False)
                if t.dtype.kind == "f" and stored is not host and bool(
                        (dev.xp.isfinite(host) & ~dev.xp.isfinite(stored)).any()):
                    wrong.append(f"{k}: values outside the range of {t.dtype}")
                    continue
                plan.append((t, backend.device_of(t._data).asarray(stored)))
                arrays[k] = stored
        for prefix, m in self.named_modules():
            start = f"{prefix}." if prefix else ""
            local = {k[len(start):]: a for k, a in arrays.items()
                     if k.startswith(start) and "." not in k[len(start):]}
            wrong.extend(f"{start}{problem}" for problem in m.check_loaded_state(local))
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if shapes:
            problems.append("wrong shapes: " + "; ".join(shapes))
        if wrong:
            problems.append("wrong values: " + "; ".join(wrong))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + ". ".join(problems))
        return plan, missing, unexpected

    def check_loaded_state(self, state: dict) -> list:
        """Problems (strings, each starting with the key) with values about to be loaded into
        this module's own parameters and buffers (``state`` maps their local names to arrays of
        the right shapes). Layers whose state must satisfy more than its shape -- quantized
        weights' scales, say -- override this; nothing is loaded while any problem remains."""
        return []

    # ---------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"
