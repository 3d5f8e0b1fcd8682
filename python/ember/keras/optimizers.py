"""Keras's optimizer objects: made without parameters, as in Keras, and bound to the model's
when it is compiled (and built). Their arguments are Keras's names and defaults, checked when
the object is made, and their updates are Keras's:

- ``Adam`` / ``AdamW``: ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``,
  ``p -= alpha * m / (sqrt(v) + epsilon)`` (PyTorch adds its ``eps`` to the bias-corrected
  ``sqrt(v / (1 - beta_2**t))`` instead); ``AdamW`` is ``Adam`` with a ``weight_decay`` (below)
  of 0.004 unless given.
- ``RMSprop``: ``v = rho * v + (1 - rho) * g**2``, ``p -= lr * g / sqrt(v + epsilon)`` (epsilon
  inside the root, PyTorch's is outside); centered: ``sqrt(v - a**2 + epsilon)`` with
  ``a = rho * a + (1 - rho) * g``; with momentum the increments ``lr * g / sqrt(...)`` gather in
  ``buf = momentum * buf + increment`` and ``p -= buf``.
- ``SGD``: PyTorch's update, which is Keras's for a constant learning rate.

Every one takes Keras's common arguments, applied as Keras's base optimizer applies them: first
the gradients are clipped -- ``clipnorm``: each parameter's gradient scaled down to that 2-norm;
``global_clipnorm``: all of them together to that global 2-norm; ``clipvalue``: each entry into
``[-clipvalue, clipvalue]`` (one of the three at most) -- then ``weight_decay`` shrinks each
parameter that has a gradient, ``p -= p * weight_decay * lr`` (decoupled from the gradient, as
``AdamW``'s; PyTorch's ``weight_decay`` adds ``weight_decay * p`` to the gradient instead), and
then the update is made.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, nn, optim
from .._check import real
from ..autograd import enable_grad

_CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")


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
    """An optimizer to be; ``build(params)`` makes the ``ember.optim`` optimizer. ``options``
    holds its checked arguments, Keras's common ones (``weight_decay`` and the clipping ones,
    see the module's notes) only when given."""

    def __init__(self, learning_rate, **options):
        who = type(self).__name__
        self.learning_rate = _number(learning_rate, f"{who}: learning_rate", "> 0", lambda v: v > 0)
        clips = [k for k in _CLIPS if options.get(k) is not None]
        if len(clips) > 1:
            raise ValueError(f"{who}: give at most one of clipnorm, clipvalue and global_clipnorm (Keras's rule), "
                             f"got {' and '.join(clips)}")
        positive = ("> 0", lambda v: v > 0)
        rules = {"beta_1": ("in [0, 1)", lambda v: 0 <= v < 1), "beta_2": ("in [0, 1)", lambda v: 0 <= v < 1),
                 "rho": ("in [0, 1)", lambda v: 0 <= v < 1), "momentum": (">= 0", lambda v: v >= 0),
                 "epsilon": positive, "weight_decay": (">= 0", lambda v: v >= 0), "clipnorm": positive,
                 "clipvalue": positive, "global_clipnorm": positive}
        common = ("weight_decay", *_CLIPS)
        self.options = {k: _number(v, f"{who}: {k}", *rules[k]) if k in rules else _flag(v, f"{who}: {k}")
                        for k, v in options.items() if v is not None or k not in common}

    def _common(self) -> dict:
        """The built optimizer's arguments for Keras's common ones: its decoupled
        ``weight_decay`` and the clipping given."""
        return {"weight_decay": self.options.get("weight_decay", 0.0),
                **{k: self.options[k] for k in _CLIPS if k in self.options}}

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(learning_rate={self.learning_rate!r}{options})"


def _decay(p, group) -> None:
    """Keras's weight decay of a parameter array before its update: ``p -= p * weight_decay * lr``."""
    if group["weight_decay"]:
        f = p.dtype.type
        p -= p * f(group["weight_decay"]) * f(group["lr"])


class _KerasClipping:
    """Keras's gradient clipping (the module's notes) in the optimizers ``build`` makes: the
    gradients are clipped at every step, before the update."""

    def __init__(self, params, clipnorm=None, clipvalue=None, global_clipnorm=None, **settings):
        super().__init__(params, **settings)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm

    def step(self, closure=None):
        loss = None
        if closure is not None:  # it computes the gradients to clip
            with enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.clipnorm is not None:
            for p in params:
                nn.utils.clip_grad_norm_(p, self.clipnorm)
        elif self.global_clipnorm is not None:
            nn.utils.clip_grad_norm_(params, self.global_clipnorm)
        elif self.clipvalue is not None:
            for p in params:
                g = p.grad._data
                backend.namespace(g).clip(g, -self.clipvalue, self.clipvalue, out=g)
        super().step()
        return loss


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


class KerasAdam(_KerasClipping, _KerasEpsilon, optim.Adam):
    """The ``ember.optim.Adam`` that ``Adam`` builds: Keras's epsilon, clipping and decoupled
    weight decay (see the module's notes)."""

    _decoupled = True


class KerasAdamW(_KerasClipping, _KerasEpsilon, optim.AdamW):
    """The ``ember.optim.AdamW`` that ``AdamW`` builds: Keras's epsilon and clipping (see the
    module's notes)."""


class KerasSGD(_KerasClipping, optim.SGD):
    """The ``ember.optim.SGD`` that ``SGD`` builds: Keras's clipping and decoupled weight decay
    (see the module's notes)."""

    def _step_fused(self, params, grads, states, group) -> None:
        for p in params:
            _decay(p, group)
        super()._step_fused(params, grads, states, {**group, "weight_decay": 0.0})

    def _update(self, p, grad, state, group) -> None:
        _decay(p, group)
        super()._update(p, grad, state, {**group, "weight_decay": 0.0})


class KerasRMSprop(_KerasClipping, optim.RMSprop):
    """The ``ember.optim.RMSprop`` that ``RMSprop`` builds, with Keras's update (the module's
    notes, clipping and decoupled weight decay included); ``alpha`` is Keras's ``rho``, and the
    momentum buffer holds learning-rate-scaled increments."""

    def _update(self, p, grad, state, group) -> None:
        xp, f = backend.namespace(p), p.dtype.type
        rho, mu = group["alpha"], group["momentum"]
        g = -grad if group["maximize"] else grad
        _decay(p, group)
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
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)

    def build(self, params):
        o = self.options
        return KerasAdam(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                         amsgrad=o["amsgrad"], **self._common())


class AdamW(Optimizer):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        if weight_decay is None:  # Keras's AdamW needs one
            raise TypeError("AdamW: weight_decay must be a real number >= 0, got None")
        super().__init__(learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)

    def build(self, params):
        o = self.options
        return KerasAdamW(params, lr=self.learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                          **self._common())


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)

    def build(self, params):
        momentum = self.options["momentum"]
        # Keras's Nesterov without momentum is plain SGD (PyTorch's refuses it)
        return KerasSGD(params, lr=self.learning_rate, momentum=momentum,
                        nesterov=self.options["nesterov"] and momentum > 0, **self._common())


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)

    def build(self, params):
        o = self.options
        return KerasRMSprop(params, lr=self.learning_rate, alpha=o["rho"], eps=o["epsilon"], momentum=o["momentum"],
                            centered=o["centered"], **self._common())


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
