"""Callbacks for ``fit``: the ``Callback`` base class for users' own, ``History``,
``EarlyStopping``, ``ModelCheckpoint``, ``LearningRateScheduler``, ``CSVLogger`` and the
progress display.

A callback sees ``self.model`` and ``self.params`` (``epochs``, ``steps`` per epoch,
``optimizer``, ``history``, ``fit_seed``, ``callbacks``) and is called at the start and end of training, of
each epoch and of each training batch with the logs so far (``loss``, the metrics,
``samples_per_s`` and, at an epoch's end, ``val_*``). Setting ``self.model.stop_training =
True`` ends training after the current epoch.

A callback whose decisions depend on earlier epochs (a plateau's counts, the best value seen)
gives that state with ``state_dict()`` and takes it back with ``load_state_dict()``;
``ModelCheckpoint`` stores every callback's state (JSON values) as it is when the checkpoint is
written, and ``fit(resume_from=...)`` gives it back to the callback of the same class and
position, so that a resumed run continues as the uninterrupted one would have. Callbacks run in
the order given, except that at an epoch's end the ``ModelCheckpoint`` callbacks run after the
others (as PyTorch Lightning's do), so that a checkpoint holds what every other callback made of
the epoch.

In distributed training (``ember.distributed``) every rank runs the callbacks with the same,
global epoch logs, so their decisions agree; those that write files or print
(``main_process_only = True``: ``ModelCheckpoint``, ``CSVLogger``, the progress display) run on
rank 0 alone.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._check import real


class Callback:
    """Override any of the ``on_*`` methods."""

    model = None
    params: dict = {}
    main_process_only = False  # True: in distributed training only rank 0 runs it

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None): ...

    def on_train_batch_end(self, batch, logs=None): ...

    def state_dict(self) -> dict | None:
        """What a resumed ``fit`` needs to continue this callback as if it had not stopped
        (JSON values: numbers, strings, lists, dicts), or None when it needs nothing. A callback
        that returns a state defines ``load_state_dict`` too."""
        return None

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} gives a state_dict() but defines no load_state_dict()")


def _same_form(now, saved) -> bool:
    """Whether a stored state has the form of the state a callback has now: the same keys, lists
    of the same lengths, equal strings and flags, integers where it has integers, numbers where
    it has numbers, and a number or None where it has None (a value not known yet)."""
    if isinstance(now, dict):
        return isinstance(saved, dict) and saved.keys() == now.keys() and all(_same_form(now[k], saved[k]) for k in now)
    if isinstance(now, (list, tuple)):
        return isinstance(saved, list) and len(saved) == len(now) and all(map(_same_form, now, saved))
    if isinstance(now, (str, bool)):
        return saved == now and type(saved) is type(now)
    if saved is None:
        return now is None
    if isinstance(saved, bool) or not isinstance(saved, numbers.Real):
        return False
    if now is None or isinstance(now, numbers.Real) and not isinstance(now, numbers.Integral):
        return True
    return isinstance(now, numbers.Integral) and isinstance(saved, numbers.Integral)


class CallbackList:
    """Calls each callback in order (at an epoch's end, the ModelCheckpoints last)."""

    def __init__(self, callbacks, model, params, main=True):
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be ember.callbacks.Callback objects, got {type(cb).__name__}")
        self.callbacks = [cb for cb in callbacks if main or not cb.main_process_only]
        # main: whether this process may print (rank 0 of a distributed run)
        self.params = params = {**params, "main": main, "callbacks": self}
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def _keyed(self):
        """Each callback with its key in a checkpoint: its class's name and its place among the
        callbacks of that class (the same on every rank, which may run fewer of them)."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, -1) + 1
            yield f"{name}[{seen[name]}]", cb

    def states(self) -> dict:
        """Every callback's state that is not None, by key. A state JSON cannot hold (a callback
        of one's own that keeps arrays, say) is left out, with a warning: a run resumed from
        the checkpoint starts that callback afresh."""
        from .checkpoint import _json_ready

        out = {}
        for key, cb in self._keyed():
            state = cb.state_dict()
            if state is None:
                continue
            try:
                out[key] = _json_ready(state)
            except TypeError as exc:
                warnings.warn(f"ModelCheckpoint: the state of callback {key} is left out of the checkpoint ({exc}); "
                              "a run resumed from it starts that callback afresh", stacklevel=3)
        return out

    def checked_states(self, saved, where: str) -> list:
        """The (callback, state) pairs to restore from ``saved`` (what ``states`` gave in an
        earlier run), each checked to have the form of the callback's own state, so that
        restoring cannot fail half-way. A callback the earlier run did not have starts afresh."""
        if not isinstance(saved, dict):
            raise ValueError(f"{where} records callback states that are not a JSON object")
        pairs = []
        for key, cb in self._keyed():
            if key in saved:
                now = cb.state_dict()
                if now is None or not _same_form(now, saved[key]):
                    raise ValueError(f"{where} records a state for {key} that does not fit this fit's {key} "
                                     f"(was it built with other arguments?): {saved[key]!r:.200}")
                pairs.append((cb, saved[key]))
        return pairs

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in sorted(self.callbacks, key=lambda cb: isinstance(cb, ModelCheckpoint)):  # checkpoints last
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self.callbacks:
            cb.on_train_batch_end(batch, logs)


class History(Callback):
    """``history[name]`` is the list of that log's values, one per epoch run; ``epoch`` the
    epochs' numbers. ``interrupted`` is True when Ctrl-C ended training."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.interrupted = False

    def restore(self, saved: dict) -> None:
        """Continue the record of a resumed run ({"epoch": [...], "history": {...}})."""
        self.epoch = list(saved.get("epoch", []))
        self.history = {k: list(v) for k, v in saved.get("history", {}).items()}

    def as_dict(self) -> dict:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


# Logs whose larger values are better: accuracies (acc, top5...), precision, recall, F1, AUC.
_HIGHER_IS_BETTER = re.compile(r"acc|precision|recall|f1|auc|top_?\d")


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if _HIGHER_IS_BETTER.search(monitor) else "min"
    return mode


class _Monitor:
    """Tracks the best value of one log."""

    def __init__(self, monitor, mode, min_delta):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a log name such as 'val_loss', got {monitor!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.min_delta = monitor, _resolve_mode(mode, monitor), min_delta
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs, who):
        if self.monitor not in (logs or {}):
            raise KeyError(f"{who}: monitor {self.monitor!r} is not among the logs {sorted(logs or {})} "
                           "(val_* logs need validation data)")
        return float(logs[self.monitor])

    def improved(self, value) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs (at the first epoch without improvement for ``patience`` 0 or 1, as Keras); with
    ``restore_best_weights`` the model ends with the best epoch's weights."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        min_delta = real(min_delta, "EarlyStopping: min_delta")
        if not min_delta < math.inf:  # NaN or inf: no change could count as an improvement
            raise ValueError(f"EarlyStopping: min_delta must be finite, got {min_delta!r}")
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.patience, self.restore_best_weights = int(patience), restore_best_weights
        self.wait, self.stopped_epoch, self.best_epoch, self._best_weights = 0, None, None, None

    @property
    def best(self):
        return self._monitor.best

    def on_train_begin(self, logs=None):
        self._monitor.best = math.inf if self._monitor.mode == "min" else -math.inf
        self.wait, self.stopped_epoch, self.best_epoch, self._best_weights = 0, None, None, None

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs, "EarlyStopping")
        if self._monitor.improved(value):
            self._monitor.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = {k: v._host().copy() for k, v in self.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:  # Keras's rule: patience epochs without improvement, then stop
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
        elif self.restore_best_weights and self.best_epoch is not None:  # resumed: the best was before
            warnings.warn(f"EarlyStopping: the best epoch ({self.best_epoch + 1}) came before this run resumed, "
                          "and its weights are not in the checkpoint; the model keeps its last weights",
                          stacklevel=2)

    def state_dict(self) -> dict:
        return {"monitor": self._monitor.monitor, "best": self._monitor.best, "wait": self.wait,
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self._monitor.best, self.wait = float(state["best"]), int(state["wait"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])


def _check_path(path, who: str) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{who}: path must be a file path (str or os.PathLike), got {type(path).__name__} {path!r}")
    if not os.fspath(path):
        raise ValueError(f"{who}: path is empty")


class ModelCheckpoint(Callback):
    """Save a checkpoint (weights, optimizer state, epoch, random state, history) at each
    epoch's end, or only when ``monitor`` improves with ``save_best_only``. ``path`` may hold
    ``{epoch}`` and log names, such as ``"ckpt-{epoch:02d}-{val_loss:.3f}.safetensors"``.
    Files are written atomically. ``fit(resume_from=path)`` continues from one."""

    main_process_only = True

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", config=None, verbose=0):
        _check_path(path, "ModelCheckpoint")
        self.path = str(path)
        self.save_best_only, self.config, self.verbose = save_best_only, config, verbose
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.last_saved = None

    @property
    def best(self):
        return self._monitor.best

    def on_epoch_end(self, epoch, logs=None):
        from .checkpoint import save

        logs = logs or {}
        if self.save_best_only:
            value = self._monitor.value(logs, "ModelCheckpoint")
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        try:
            path = Path(self.path.format(epoch=epoch + 1, **logs))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot fill in the path {self.path!r} ({exc})") from None
        history, callbacks = self.params.get("history"), self.params.get("callbacks")
        extra = {"fit_seed": self.params.get("fit_seed"), "history": history.as_dict() if history else {},
                 "monitor": self._monitor.monitor, "logs": {k: float(v) for k, v in logs.items()},
                 "callbacks": callbacks.states() if callbacks else {}}
        if "rank_rng" in self.params:  # a distributed run: every rank's random state, by rank
            extra["rank_rng"] = self.params["rank_rng"]
        if path.parent != Path("."):
            path.parent.mkdir(parents=True, exist_ok=True)
        save(path, self.model, self.params.get("optimizer"), epoch=epoch + 1, config=self.config, extra=extra)
        self.last_saved = path
        if self.verbose:
            print(f"epoch {epoch + 1}: saved {path}")

    def state_dict(self) -> dict:
        return {"monitor": self._monitor.monitor, "best": self._monitor.best}

    def load_state_dict(self, state: dict) -> None:
        self._monitor.best = float(state["best"])


class LearningRateScheduler(Callback):
    """Set the learning rate from a schedule at each epoch's start: ``schedule(epoch, lr)`` (a
    function of the epoch number and the current rate) or an ``ember.optim.lr_scheduler``
    schedule, stepped once per epoch -- at the start of each epoch after a run's first, which is
    the epoch it stands at. A ``ReduceLROnPlateau`` steps with the ``monitor`` log at each
    epoch's end. With ``interval="batch"`` the schedule runs per training step instead: the
    function gets the step number counted over the whole run (epoch x steps per epoch + batch).
    A run resumed from a checkpoint (or started at ``initial_epoch``) continues the schedule from
    its epoch or step, chained schedules included; a ``ReduceLROnPlateau``'s counts are in the
    checkpoint."""

    # What a ReduceLROnPlateau has learnt (its other attributes are its arguments).
    _PLATEAU_PROGRESS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def __init__(self, schedule, verbose=0, interval: str = "epoch", monitor: str = "val_loss"):
        if not callable(schedule) and not hasattr(schedule, "step"):
            raise TypeError("LearningRateScheduler: schedule must be a function (epoch, lr) -> lr or an "
                            "ember.optim.lr_scheduler object")
        if interval not in ("epoch", "batch"):
            raise ValueError(f"LearningRateScheduler: interval must be 'epoch' or 'batch', got {interval!r}")
        if interval == "batch" and hasattr(schedule, "step") and not hasattr(schedule, "lr_at"):
            raise TypeError("LearningRateScheduler: interval='batch' needs a function or a scheduler of the step "
                            f"count (an LRScheduler); {type(schedule).__name__} steps on a metric")
        self.schedule, self.verbose, self.interval = schedule, verbose, interval
        # A schedule of a metric (ReduceLROnPlateau) is stepped with this log at each epoch's end.
        self._monitor = None if hasattr(schedule, "lr_at") or not hasattr(schedule, "step") else \
            _Monitor(monitor, "auto", 0.0)
        self._epoch, self._started = 0, False

    def on_train_begin(self, logs=None):
        self._started = False

    def _apply(self, position, what):
        """Bring the schedule to ``position`` (an epoch, or a step with ``interval="batch"``)."""
        optimizer = self.params["optimizer"]
        if hasattr(self.schedule, "step"):  # a scheduler: one step per position after the run's first
            first, self._started = not self._started, True
            if first and position == 0:
                return  # it was built standing at 0
            if first:  # a run starting later: the rate in force (a checkpoint's) is that of the position before
                self.schedule.last_epoch = position - 1
            self.schedule.step()
            return
        lr = self.schedule(position, optimizer.param_groups[0]["lr"])
        if not isinstance(lr, (int, float, np.floating)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned {lr!r} for {what} {position}; "
                             "a finite rate >= 0 is needed")
        for g in optimizer.param_groups:
            g["lr"] = float(lr)
        if self.verbose and self.params.get("main", True):  # every rank sets the rate; rank 0 says so
            print(f"{what} {position + 1}: learning rate {lr:.6g}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.interval == "epoch" and self._monitor is None:
            self._apply(epoch, "epoch")

    def on_train_batch_begin(self, batch, logs=None):
        if self.interval == "batch":
            self._apply(self._epoch * self.params["steps"] + batch, "step")

    def on_epoch_end(self, epoch, logs=None):
        if self._monitor is not None:
            self.schedule.step(self._monitor.value(logs, "LearningRateScheduler"))

    def state_dict(self) -> dict | None:
        if self._monitor is None:  # a function, or a schedule of the epoch or step: nothing to keep
            return None
        return {k: getattr(self.schedule, k) for k in self._PLATEAU_PROGRESS}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self.schedule, k, v)


class CSVLogger(Callback):
    """One CSV row per epoch (the epoch and every log), flushed as it is written."""

    main_process_only = True

    def __init__(self, path, separator=",", append=False):
        _check_path(path, "CSVLogger")
        if not isinstance(separator, str) or len(separator) != 1 or separator.isalnum() or separator in '._-+"\r\n':
            raise ValueError(f"CSVLogger: separator must be one character other than a letter, a digit or one of "
                             f"._-+\" and a line break (those occur in the numbers and log names), got {separator!r}")
        self.path, self.separator, self.append = Path(path), separator, append
        self._file, self._keys = None, None

    def on_train_begin(self, logs=None):
        exists = self.append and self.path.exists() and self.path.stat().st_size > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")  # noqa: SIM115 (closed at train end)
        self._keys = None
        if exists:
            with open(self.path) as f:
                self._keys = f.readline().strip().split(self.separator)[1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._file.write(self.separator.join(["epoch", *self._keys]) + "\n")
        row = [str(epoch)] + [repr(float(logs[k])) if k in logs else "" for k in self._keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def _format_logs(logs, skip=("samples_per_s", "lr")):
    return " - ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in skip)


class ProgressLogger(Callback):
    """verbose 1: a live bar per epoch (tqdm) with loss, metrics and samples/s; 2: one line per
    epoch; 0: nothing; 'auto': a bar on a terminal, lines otherwise."""

    main_process_only = True

    def __init__(self, verbose="auto", file=None):
        if verbose not in ("auto", 0, 1, 2):
            raise ValueError(f"fit: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
        self.file = file if file is not None else sys.stdout
        if verbose == "auto":
            verbose = 1 if getattr(self.file, "isatty", lambda: False)() else 2
        self.verbose = verbose
        self._bar, self._start, self._shown = None, 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if self.verbose == 1:
            try:
                from tqdm import tqdm
            except ImportError:  # no bar without tqdm: fall back to lines
                self.verbose = 2
                return
            self._bar = tqdm(total=self.params["steps"], desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                             unit="batch", file=self.file, leave=True, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.perf_counter()
        if now - self._shown > 0.2:  # formatting the postfix every batch would cost more than a step
            self._shown = now
            self._bar.set_postfix_str(f"{_format_logs(logs)} - {logs['samples_per_s']:.0f} samples/s", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        text = f"{_format_logs(logs)} - {logs.get('samples_per_s', 0.0):.0f} samples/s"
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            print(f"epoch {epoch + 1}/{self.params['epochs']} - {elapsed:.1f}s - {text}", file=self.file, flush=True)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if logs and logs.get("interrupted") and self.verbose:
            print("training stopped by Ctrl-C after the current step", file=self.file, flush=True)


__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LearningRateScheduler", "ModelCheckpoint",
           "ProgressLogger"]
