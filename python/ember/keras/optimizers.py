"""Keras's optimizer objects: made without parameters, as in Keras, and bound to the model's
when it is compiled (and built). Their arguments are Keras's names and defaults, checked when
the object is made, and their updates are Keras's:

- ``Adam`` / ``AdamW``: ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``,
  ``p -= alpha * m / (sqrt(v) + epsilon)`` (PyTorch adds its ``eps`` to the bias-corrected
  ``sqrt(v / (1 - beta_2**t))`` instead); ``AdamW`` first does ``p -= lr * weight_decay * p``.
- ``RMSprop``: ``v = rho * v + (1 - rho) * g**2``, ``p -= lr * g / sqrt(v + epsilon)`` (epsilon
  inside the root, PyTorch's is outside); centered: ``sqrt(v - a**2 + epsilon)`` with
  ``a = rho * a + (1 - rho) * g``; with momentum the increments ``lr * g / sqrt(...)`` gather in
  ``buf = momentum * buf + increment`` and ``p -= buf``.
- ``SGD``: PyTorch's update, which is Keras's for a constant learning rate.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, optim
from .._check import real


def _number(value, name, span, ok) -> float:
    """``value`` as a float, a finite real number for which ``ok`` holds (``span`` says which)."""
    v = real(value, name)
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be {span}, got {value!r}")
    return v


def _flag(value, name) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class Optimizer:
    """An optimizer to be; ``build(params)`` makes the ``ember.optim`` optimizer."""

    def __init__(self, learning_rate, **options):
        who = type(self).__name__
        self.learning_rate = _number(learning_rate, f"{who}: learning_rate", "> 0", lambda v: v > 0)
        rules = {"beta_1": ("in [0, 1)", lambda v: 0 <= v < 1), "beta_2": ("in [0, 1)", lambda v: 0 <= v < 1),
                 "rho": ("in [0, 1)", lambda v: 0 <= v < 1), "momentum": (">= 0", lambda v: v >= 0),
                 "epsilon": ("> 0", lambda v: v > 0), "weight_decay": (">= 0", lambda v: v >= 0)}
        self.options = {k: _number(v, f"{who}: {k}", *rules[k]) if k in rules else _flag(v, f"{who}: {k}")
                        for k, v in options.items()}

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(learning_rate={self.learning_rate!r}{options})"


class _KerasEpsilon:
    """Keras's Adam epsilon on PyTorch's update: Keras's step is PyTorch's with ``eps`` replaced
    by ``epsilon / sqrt(1 - beta_2**t)``, ``t`` the step about to be made."""

    @staticmethod
    def _at(group, t):
        return {**group, "eps": group["eps"] / math.sqrt(1 - group["betas"][1] ** t)}

    def _step_fused(self, params, grads, states, group) -> None:
        steps = [s.get("step", 0) + 1 for s in states]
        for t in sorted(set(steps)):  # one call unless some parameters skipped steps
            idx = [i for i, s in enumerate(steps) if s == t]
            super()._step_fused([params[i] for i in idx], [grads[i] for i in idx], [states[i] for i in idx],
                                self._at(group, t))

    def _update(self, p, grad, state, group) -> None:
        super()._update(p, grad, state, self._at(group, state.get("step", 0) + 1))


class KerasAdam(_KerasEpsilon, optim.Adam):
    """The ``ember.optim.Adam`` that ``Adam`` builds: Keras's epsilon (see the module's notes)."""


class KerasAdamW(_KerasEpsilon, optim.AdamW):
    """The ``ember.optim.AdamW`` that ``AdamW`` builds: Keras's epsilon (see the module's notes)."""


class KerasRMSprop(optim.RMSprop):
    """The ``ember.optim.RMSprop`` that ``RMSprop`` builds, with Keras's update (the module's
    notes); ``alpha`` is Keras's ``rho``, and the momentum buffer holds learning-rate-scaled
    increments."""

    def _update(self, p, grad, state, group) -> None:
        xp, f = backend.namespace(p), p.dtype.type
        rho, mu = group["alpha"], group["momentum"]
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + f(group["weight_decay"]) * p
        if not state:
            state.update(step=0, square_avg=xp.zeros_like(p))
        state["step"] += 1
        v = state["square_avg"]
        v *= f(rho)
        v += f(1 - rho) * g * g
        denom = v + f(group["eps"])
        if group["centered"]:
            if "grad_avg" not in state:
                state["grad_avg"] = xp.zeros_like(p)
            a = state["grad_avg"]
            a *= f(rho)
            a += f(1 - rho) * g
            denom = denom - a * a
        increment = f(group["lr"]) * g / xp.sqrt(denom)
        if mu:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = xp.zeros_like(p)
            buf = state["momentum_buffer"]
            buf *= f(mu)
            buf += increment
            increment = buf
        p -= increment


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)

    def build(self, params):
        o = self.options
        return KerasAdam(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                         amsgrad=o["amsgrad"])


class AdamW(Optimizer):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)

    def build(self, params):
        o = self.options
        return KerasAdamW(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                          weight_decay=o["weight_decay"])


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov)

    def build(self, params):
        momentum = self.options["momentum"]
        # Keras's Nesterov without momentum is plain SGD (PyTorch's refuses it)
        return optim.SGD(params, lr=self.learning_rate, momentum=momentum,
                         nesterov=self.options["nesterov"] and momentum > 0)


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered)

    def build(self, params):
        o = self.options
        return KerasRMSprop(params, lr=self.learning_rate, alpha=o["rho"], eps=o["epsilon"], momentum=o["momentum"],
                            centered=o["centered"])


_NAMES = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}


def get(identifier, learning_rate=None) -> Optimizer | optim.Optimizer:
    """A Keras optimizer from a name (with ``learning_rate``), or the object itself."""
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; use one of {sorted(_NAMES)} or an optimizer object")
        return cls() if learning_rate is None else cls(learning_rate=learning_rate)
    if learning_rate is not None:
        raise ValueError("learning_rate= applies to an optimizer given by name; set it on the optimizer object")
    if isinstance(identifier, (Optimizer, optim.Optimizer)):
        return identifier
    raise TypeError(f"optimizer must be a name or an optimizer object, got {type(identifier).__name__}")
