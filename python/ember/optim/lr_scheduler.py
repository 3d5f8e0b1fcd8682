"""Learning-rate schedules, PyTorch's names and formulas (closed forms, so a scheduler
restored from its state_dict continues exactly).

A schedule alone on its optimizer sets the closed form. Several schedules on one optimizer
(and ``ReduceLROnPlateau`` beside them) chain as PyTorch's do: each step multiplies the rate in
force by the change of that schedule's own factor, so a warm-up ``LinearLR`` with an
``ExponentialLR`` decays from the warmed-up rate, and a plateau's reduction stays. ``OneCycleLR``
sets the rate (and the momentum) itself, as PyTorch's does.
"""

from __future__ import annotations

import math
import weakref


# optimizer -> the schedules attached to it (weakly: one no longer referenced drops out).
_schedules = weakref.WeakKeyDictionary()


def _attach(scheduler) -> None:
    _schedules.setdefault(scheduler.optimizer, weakref.WeakSet()).add(scheduler)


def _alone(scheduler) -> bool:
    """Whether ``scheduler`` is the only live schedule of its optimizer."""
    return all(s is scheduler for s in _schedules.get(scheduler.optimizer, ()))


class _SchedulerState:
    """get_last_lr and the state_dict protocol, shared by every schedule."""

    optimizer = None

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class LRScheduler(_SchedulerState):
    """Sets each parameter group's ``lr`` from ``base_lrs`` and the epoch count; ``step()`` once
    per epoch (or per batch for OneCycleLR), after ``optimizer.step()``."""

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        _attach(self)
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        epoch = self.last_epoch
        alone = _alone(self)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            now = self.lr_at(base, epoch)
            before = self.lr_at(base, epoch - 1) if epoch > 0 else base
            if alone or not before:  # the closed form (after a factor of 0 the change is not a ratio)
                g["lr"] = now
            else:  # chained: this schedule's change, applied to the rate in force
                g["lr"] = g["lr"] * (now / before)


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** sum(1 for m in self.milestones if m <= epoch)


class ExponentialLR(LRScheduler):
    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearLR(LRScheduler):
    """Warm-up (or cool-down): the factor goes linearly from start_factor to end_factor over
    total_iters steps, then stays."""

    def __init__(self, optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: need 0 < start_factor <= 1 and 0 <= end_factor <= 1, got {start_factor}, "
                             f"{end_factor}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        t = min(epoch, self.total_iters) / self.total_iters if self.total_iters else 1.0
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * t)


class WarmupCosineLR(LRScheduler):
    """The usual schedule of Transformer training, stepped once per batch: the rate rises
    linearly from ``base_lr / warmup_steps`` to ``base_lr`` over the first ``warmup_steps``
    steps, then falls along a cosine to ``base_lr * min_factor`` at ``total_steps`` and stays
    there."""

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, min_factor: float = 0.1,
                 last_epoch: int = -1):
        for name, v in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"WarmupCosineLR: {name} must be an int >= 0, got {v!r}")
        if total_steps < max(1, warmup_steps):
            raise ValueError(f"WarmupCosineLR: total_steps ({total_steps}) must be >= 1 and >= warmup_steps "
                             f"({warmup_steps})")
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"WarmupCosineLR: min_factor must be in [0, 1], got {min_factor!r}")
        self.warmup_steps, self.total_steps, self.min_factor = warmup_steps, total_steps, min_factor
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        if epoch < self.warmup_steps:
            return base_lr * (epoch + 1) / self.warmup_steps
        done = min(1.0, (epoch - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return base_lr * (self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * done)) / 2)


def _anneal_cos(start, end, pct):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start, end, pct):
    return (end - start) * pct + start


_ANNEAL = {"cos": _anneal_cos, "linear": _anneal_linear}


def _per_group(name: str, value, n: int) -> list:
    """``value`` for each of n parameter groups: a list or tuple of n, or one value for all."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"OneCycleLR: {name} must be one number or one per parameter group ({n}), got {len(values)}")
    return values


class OneCycleLR(LRScheduler):
    """PyTorch's one-cycle policy, stepped once per batch. The rate rises from
    ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then
    falls to ``max_lr / (div_factor * final_div_factor)``; with ``three_phase`` it first falls
    back to ``max_lr / div_factor`` over as many steps, then to the floor. ``anneal_strategy``:
    ``'cos'`` or ``'linear'``.

    With ``cycle_momentum`` (the default) the momentum -- SGD's and RMSprop's ``momentum``,
    Adam's and AdamW's ``betas[0]`` -- moves the other way, from ``max_momentum`` down to
    ``base_momentum`` while the rate rises, and back up while it falls (the last phase of
    ``three_phase`` holds it at ``max_momentum``). ``max_lr``, ``base_momentum`` and
    ``max_momentum`` take one value, or one per parameter group."""

    def __init__(self, optimizer, max_lr, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, last_epoch: int = -1, *, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95, three_phase: bool = False):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"OneCycleLR: total_steps must be >= 1 and an int, got {total_steps!r}")
        if isinstance(pct_start, bool) or not isinstance(pct_start, (int, float)) or not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"OneCycleLR: pct_start must be a number in [0, 1], got {pct_start!r}")
        for name, v in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not v > 0:
                raise ValueError(f"OneCycleLR: {name} must be > 0, got {v!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        for name, v in (("cycle_momentum", cycle_momentum), ("three_phase", three_phase)):
            if not isinstance(v, bool):
                raise TypeError(f"OneCycleLR: {name} must be True or False, got {v!r}")
        # Everything is checked before any group changes.
        groups = optimizer.param_groups
        max_lrs = _per_group("max_lr", max_lr, len(groups))
        for m in max_lrs:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
                raise ValueError(f"OneCycleLR: max_lr must be finite and > 0, got {m!r}")
        use_beta1 = "betas" in optimizer.defaults
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and not use_beta1:
                raise ValueError(f"OneCycleLR: cycle_momentum needs an optimizer with momentum or betas; "
                                 f"{type(optimizer).__name__} has neither (pass cycle_momentum=False)")
            momenta = {name: _per_group(name, v, len(groups))
                       for name, v in (("max_momentum", max_momentum), ("base_momentum", base_momentum))}
            for name, values in momenta.items():
                for g, m in zip(groups, values):
                    try:  # the optimizer's own rules for the values the schedule will set
                        optimizer._check_group({**g, **self._momentum(g, m, use_beta1)})
                    except (TypeError, ValueError) as exc:
                        raise type(exc)(f"OneCycleLR: {name} {m!r} does not suit {type(optimizer).__name__}: "
                                        f"{exc}") from None
        if last_epoch == -1:
            for i, (g, m) in enumerate(zip(groups, max_lrs)):
                g["initial_lr"] = m / div_factor
                g["max_lr"] = m
                g["min_lr"] = g["initial_lr"] / final_div_factor
                if cycle_momentum:
                    g.update(self._momentum(g, momenta["max_momentum"][i], use_beta1),
                             max_momentum=momenta["max_momentum"][i], base_momentum=momenta["base_momentum"][i])
        self.total_steps, self.pct_start = total_steps, pct_start
        self.anneal_strategy, self.cycle_momentum, self.use_beta1 = anneal_strategy, cycle_momentum, use_beta1
        # (last step of the phase, its start and end rates, its start and end momenta): group keys.
        warm = float(pct_start * total_steps) - 1
        if three_phase:
            self._phases = [(warm, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                             "max_momentum"),
                            (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [(warm, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _momentum(group: dict, momentum, use_beta1: bool) -> dict:
        """The entry of ``group`` that sets its momentum (Adam's: ``betas[0]``) to ``momentum``."""
        return {"betas": (momentum, *group["betas"][1:])} if use_beta1 else {"momentum": momentum}

    def step(self) -> None:
        self.last_epoch += 1
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {t} times with total_steps={self.total_steps}")
        anneal = _ANNEAL[self.anneal_strategy]
        for g in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if t <= end or i == len(self._phases) - 1:
                    break
                start = end
            pct = (t - start) / (end - start) if t != start else 0.0  # a warm-up of one step starts at initial_lr
            g["lr"] = anneal(g[lr0], g[lr1], pct)
            if self.cycle_momentum:
                g.update(self._momentum(g, anneal(g[m0], g[m1], pct), self.use_beta1))


class ReduceLROnPlateau(_SchedulerState):
    """Divide the learning rate by 1/factor when a metric has not improved for ``patience``
    epochs: ``scheduler.step(val_loss)``."""

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0.0,
                 eps: float = 1e-8):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max' and threshold_mode 'rel' or 'abs', "
                             f"got {mode!r}, {threshold_mode!r}")
        self.optimizer, self.mode, self.factor, self.patience = optimizer, mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown, self.eps = threshold, threshold_mode, cooldown, eps
        n = len(optimizer.param_groups)
        self.min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        if len(self.min_lrs) != n:  # one per group, or a group would never be reduced
            raise ValueError(f"ReduceLROnPlateau: min_lr must be one number or one per parameter group ({n}), got "
                             f"{len(self.min_lrs)}")
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0
        self.last_epoch = 0
        _attach(self)

    def _better(self, a: float) -> bool:
        if self.mode == "min":
            edge = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return a < edge
        edge = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return a > edge

    def step(self, metric: float) -> None:
        metric = float(metric)
        self.last_epoch += 1
        if self._better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g, low in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(g["lr"] * self.factor, low)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
