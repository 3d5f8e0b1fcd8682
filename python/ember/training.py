"""Keras-style training on top of the PyTorch-shaped layer: ``model.compile``, ``fit``,
``evaluate`` and ``predict`` for any ``ember.nn.Module`` (this module installs them on
``nn.Module``, which itself knows nothing of training).

``fit`` builds a ``DataLoader`` from arrays (or takes one), switches the model to training mode
for the steps and to evaluation mode for validation, runs the callbacks and returns a
``History``. The order of the batches and the random augmentation of epoch ``e`` depend only on
the loader's seed and ``e``, and checkpoints hold the optimizer's state and the random state,
so a run resumed from a checkpoint (``resume_from=``) gives the same weights as a run that was
never interrupted. Ctrl-C stops training cleanly after the current step.
"""

from __future__ import annotations

import copy
import inspect
import math
import signal
import threading
import time
import warnings

import numpy as np

from . import backend, nn, optim
from . import metrics as metrics_module
from . import precision as _precision
from .autograd import no_grad
from .callbacks import Callback, CallbackList, History, ProgressLogger
from .losses import KERAS_LOSSES
from .tensor import Tensor
from .factories import default_generator

_OPTIMIZERS = {"adam": ("Adam", 1e-3), "adamw": ("AdamW", 1e-3), "sgd": ("SGD", 1e-2), "rmsprop": ("RMSprop", 1e-3)}
_LOSSES = {"cross_entropy": "CrossEntropyLoss", "mse": "MSELoss", "mean_squared_error": "MSELoss",
           "l1": "L1Loss", "mae": "L1Loss", "nll": "NLLLoss", "bce_with_logits": "BCEWithLogitsLoss"}


class Compiled:
    """What ``compile`` settled: the optimizer, the loss (``MODEL_LOSS``: the model's own
    ``compute_loss``), the metrics and the gradient norm limit (``clipnorm``: each parameter's,
    ``global_clipnorm``: all of them together; at most one is set)."""

    def __init__(self, optimizer, loss, metrics, clipnorm=None, global_clipnorm=None):
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics
        self.clipnorm, self.global_clipnorm = clipnorm, global_clipnorm


MODEL_LOSS = "model"  # compile(loss="model"): the model computes its loss from the batch itself


def _output_and_loss(model, loss_fn, xb, yb):
    """(output, loss) of one batch: the model's output and the loss of it, or with the model's
    own loss (``MODEL_LOSS``), no output -- the model may never build it."""
    if loss_fn is MODEL_LOSS:
        return None, model.compute_loss(xb, yb)
    out = model(xb)
    return out, loss_fn(out, yb)


def _make_optimizer(model, optimizer, lr):
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"compile: unknown optimizer {optimizer!r}; use one of {sorted(_OPTIMIZERS)} "
                             "or an ember.optim optimizer")
        name, default_lr = _OPTIMIZERS[key]
        return getattr(optim, name)(model.parameters(), lr=default_lr if lr is None else lr)
    if lr is not None:
        raise ValueError("compile: lr= applies to an optimizer given by name; set it on the optimizer object")
    if isinstance(optimizer, optim.Optimizer):
        owned = {id(p) for p in model.parameters()}
        given = [p for g in optimizer.param_groups for p in g["params"]]
        if not given or any(id(p) not in owned for p in given):
            raise ValueError("compile: the optimizer must be built over this model's parameters")
        return optimizer
    raise TypeError(f"compile: optimizer must be a name or an ember.optim optimizer, got {type(optimizer).__name__}")


def _make_loss(loss):
    if loss == MODEL_LOSS:
        return MODEL_LOSS
    if isinstance(loss, str):
        key = loss.lower()
        if key in KERAS_LOSSES:
            return KERAS_LOSSES[key]()
        if key not in _LOSSES:
            raise ValueError(f"compile: unknown loss {loss!r}; use one of {sorted([*_LOSSES, *KERAS_LOSSES])} "
                             "or a callable")
        return getattr(nn, _LOSSES[key])()
    if inspect.isfunction(loss) and loss.__module__ == "ember.losses" and loss.__name__ in KERAS_LOSSES:
        return KERAS_LOSSES[loss.__name__]()  # Keras's functions (losses.categorical_crossentropy): their objects
    if callable(loss):
        return loss
    raise TypeError(f"compile: loss must be a name or a callable (output, target) -> Tensor, got {type(loss).__name__}")


def compile(model, optimizer="adam", loss="cross_entropy", metrics=None, lr=None, clipnorm=None,
            global_clipnorm=None) -> None:
    """Set the optimizer (a name -- 'adam', 'adamw', 'sgd', 'rmsprop', with ``lr`` -- or an
    ``ember.optim`` optimizer over the model's parameters), the loss (a name such as
    'cross_entropy' -- logits against class indices or probabilities, PyTorch's -- or 'mse',
    Keras's 'categorical_crossentropy' and 'sparse_categorical_crossentropy' with their
    meanings (see ``ember.losses``), a callable, or 'model': the model's own
    ``compute_loss(x, y)``, for a model whose loss is cheaper fused with its last layer, such as
    ``ember.models.gpt``'s; it takes no metrics) and the metrics (names such as 'accuracy', 'f1',
    'top5', ``ember.metrics`` objects or functions) that ``fit`` and ``evaluate`` use.
    Before each step, as Keras's optimizers do: ``clipnorm`` scales each parameter's gradient
    down so that its 2-norm is at most this, ``global_clipnorm`` scales all of them together so
    that their global 2-norm is at most this (``ember.nn.utils.clip_grad_norm_``); give one or
    neither."""
    if metrics is None:
        metrics = []
    elif isinstance(metrics, (str, metrics_module.Metric)) or callable(metrics):
        metrics = [metrics]
    resolved = [metrics_module.get(m) for m in metrics]
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"compile: metric names must differ, got {names}")
    loss_fn = _make_loss(loss)
    if loss_fn is MODEL_LOSS:
        if not callable(getattr(model, "compute_loss", None)):
            raise ValueError(f"compile: loss='model' needs a model with a compute_loss(x, y) method; "
                             f"{type(model).__name__} has none")
        if resolved:
            raise ValueError("compile: loss='model' takes no metrics (the model's output is never built)")
    for name, limit in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or not 0 < limit < float("inf")):
            raise ValueError(f"compile: {name} must be a positive number or None, got {limit!r}")
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError("compile: give clipnorm (each parameter's gradient) or global_clipnorm (all of them "
                         "together), not both")
    object.__setattr__(model, "_compiled", Compiled(_make_optimizer(model, optimizer, lr), loss_fn, resolved,
                                                    clipnorm, global_clipnorm))


def _compiled(model, what):
    c = model.__dict__.get("_compiled")
    if c is None:
        raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=..., metrics=...) first")
    return c


def _as_array(x, name):
    if isinstance(x, Tensor):
        return x.detach()._host()
    if isinstance(x, np.ndarray):
        return x
    if x is None:
        raise ValueError(f"{name} is required")
    return np.asarray(x)


def _loader(x, y, batch_size, shuffle, seed, transform, what, drop_last=False, device=None):
    """A DataLoader over (x, y) arrays yielding batches on ``device``, or x itself when it is one."""
    from .data import DataLoader, TensorDataset

    if isinstance(x, DataLoader):
        if y is not None:
            raise ValueError(f"{what}: y must be None when x is a DataLoader (it yields the targets)")
        return x
    xa, ya = _as_array(x, f"{what}: x"), _as_array(y, f"{what}: y")
    if len(xa) != len(ya):
        raise ValueError(f"{what}: x has {len(xa)} samples but y has {len(ya)}")
    if len(xa) == 0:
        raise ValueError(f"{what}: x has no samples")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{what}: batch_size must be an int >= 1, got {batch_size!r}")
    return DataLoader(TensorDataset(xa, ya), batch_size=int(batch_size), shuffle=shuffle, drop_last=drop_last,
                      transform=transform, seed=seed, device=device)


def _class_weighted(loss, class_weight):
    """A loss that scales each sample's loss by its class's weight and averages over the batch
    (Keras's convention), from a loss that has a ``reduction`` setting. A sample's class is its
    target's index, or its one-hot (or probability) row's largest entry, as in Keras."""
    if not hasattr(loss, "reduction"):
        raise ValueError("fit: class_weight needs a loss with a 'reduction' setting (such as 'cross_entropy')")
    if not isinstance(class_weight, dict) or not class_weight:
        raise TypeError("fit: class_weight must be a non-empty dict {class index: weight}")
    n = max(int(k) for k in class_weight) + 1
    weights = np.ones(n, np.float32)
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"fit: class_weight keys must be class indices >= 0, got {k!r}")
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"fit: class_weight[{k}] must be a finite weight >= 0, got {v!r}")
        weights[int(k)] = v
    per_sample = copy.copy(loss)  # the user's loss keeps its own reduction
    per_sample.reduction = "none"

    def weighted(output, target):
        dev = backend.device_of(output._data)
        t = target._data if isinstance(target, Tensor) else dev.asarray(target)
        if t.ndim == 2:  # one-hot or probability rows weigh as their largest class, (N, 1) as its index
            t = t.argmax(1) if t.shape[1] > 1 else t.reshape(-1)
        top = int(t.max()) if t.size else 0
        w = np.ones(max(n, top + 1), np.float32)
        w[:n] = weights
        return (per_sample(output, target) * Tensor._wrap(dev.asarray(w)[t])).mean()

    return weighted


class _Interrupt:
    """Turns Ctrl-C into a request to stop after the current step (main thread only)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C interrupts at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _model_device(model, device):
    """The device to run on: ``device`` (the model is moved there), else where the model's
    parameters are."""
    if device is not None:
        model.to(device)
        return backend.get(device)
    first = next(iter(model.parameters()), None)
    return backend.device_of(first._data) if first is not None else backend.CPU


def _on(dev, batch):
    """A batch's tensors on ``dev`` (a loader that already yields them there costs nothing)."""
    return [b.to(dev) if isinstance(b, Tensor) else b for b in batch]


def _run_epoch_eval(model, loader, loss_fn, metric_objs, dev, sync=None, what="evaluate: the data"):
    """Mean loss and metric results over a loader, in evaluation mode, without recording (over
    every rank's share of the loader with ``sync``); ``what`` names the caller in errors."""
    for m in metric_objs:
        m.reset()
    total, count = 0.0, 0
    with no_grad():
        for batch in loader:
            xb, yb = _on(dev, batch[:2])
            n = len(yb)
            if n == 0:  # a rank's empty share of a short batch
                continue
            out, loss = _output_and_loss(model, loss_fn, xb, yb)
            total += float(loss.item()) * n
            count += n
            for m in metric_objs:
                m.update(yb, out)
    if sync is not None:
        total, count = sync.reduce(metric_objs, total, count, "validation")
    if not count:  # a loss of 0 over nothing would read as a perfect score
        raise ValueError(f"{what} holds no samples (an empty data set, or a drop_last loader smaller than one "
                         "batch)")
    logs = {"loss": total / count}
    for m in metric_objs:
        logs[m.name] = m.result()
    return logs


def _resume_record(path, meta, seed):
    """The seed, history, callback states, (from a distributed run) every rank's random state
    and the precision policy (None where it records none) a ModelCheckpoint file records for
    resuming (``seed`` where it records none), checked: a seed is an int >= 0, the history a
    record of numbers, the policy one Ember implements (the callback states are checked against
    the callbacks, by ``CallbackList``; the random states against the world)."""
    from .checkpoint import _json_meta

    recorded = _json_meta(meta, "ember.precision", dict, None)
    try:
        policy = None if recorded is None else _precision.from_record(recorded)
    except ValueError as exc:
        raise ValueError(f"fit: {path}: {exc}") from None
    extra = _json_meta(meta, "ember.extra", dict, {})
    saved = extra.get("fit_seed", seed)
    if saved is not None and (isinstance(saved, bool) or not isinstance(saved, int) or saved < 0):
        raise ValueError(f"fit: {path} records fit_seed {saved!r}, not an int >= 0")
    record = extra.get("history", {})
    logs = record.get("history", {}) if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("epoch", []), list) or not isinstance(logs, dict) \
            or not all(isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                       for v in logs.values()):
        raise ValueError(f"fit: {path} records a history that is not lists of numbers per metric")
    return saved, record, extra.get("callbacks", {}), extra.get("rank_rng"), policy


def fit(model, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, class_weight=None, initial_epoch=0, seed=None, transform=None,
        resume_from=None, device=None, steps_per_epoch=None, precision=None, distributed=None) -> History:
    """Train until epoch ``epochs`` (Keras's rule: ``epochs`` is the index of the final epoch,
    counted from 0, so ``initial_epoch=2, epochs=4`` runs two, and a run resumed after epoch 3
    with ``epochs=10`` runs seven more). Asking for no epoch at all -- ``epochs`` not above
    ``initial_epoch`` or the resumed checkpoint's epoch -- is a ValueError, not a silent no-op.

    ``x, y`` are arrays or tensors (a ``DataLoader`` may be given as ``x`` instead);
    ``validation_data`` is ``(x_val, y_val)`` or a ``DataLoader``, or ``validation_split``
    holds out the last fraction of ``x, y`` (before shuffling, as Keras does). ``transform``
    augments each training batch (see ``ember.data.transforms``); ``seed`` fixes the batch
    order and augmentation (drawn from ``ember.manual_seed``'s generator when None).
    ``class_weight`` ({class: weight}) scales each sample's loss. ``resume_from`` continues
    from a checkpoint written by ``ModelCheckpoint`` (weights, optimizer state, epoch, random
    state and seed), so the result equals the uninterrupted run's. ``verbose``: 0 silent, 1 a
    live bar per epoch, 2 one line per epoch, 'auto' a bar on a terminal and lines otherwise.
    ``device`` moves the model there and runs every step there (default: where the model's
    parameters are); batches are prepared on the host and copied. ``steps_per_epoch`` ends
    each epoch after that many batches (default: all of them). ``precision`` ('fp32' or 'bf16',
    see ``ember.precision``) runs every step and the validation under that policy (default: the
    policy the checkpoint records when resuming, else the one in force, fp32 unless inside
    ``ember.autocast``); the weights and the optimizer stay float32, and checkpoints record the
    policy. Resuming under a precision other than the recorded one is allowed, with a
    UserWarning: the run changes precision from there on.

    ``distributed`` (default: when started by ``mpiexec`` with several ranks; see
    ``ember.distributed``): train data-parallel over the job's ranks. ``batch_size`` stays the
    global batch -- each rank takes its share of every batch and the gradients are summed across
    ranks -- so the ranks train the model one process would (within float32 rounding); every
    rank logs the global loss and metrics, and only rank 0 prints and writes checkpoints.
    """
    from .checkpoint import checked_rng_state, read_header, saved_epoch
    from .checkpoint import load as load_checkpoint

    compiled = _compiled(model, "fit")
    policy = _precision.get(precision) if precision is not None else _precision.current()
    dev = _model_device(model, device)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
    if validation_split and validation_data is not None:
        raise ValueError("fit: give validation_data or validation_split, not both")
    if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or
                                        not isinstance(steps_per_epoch, (int, np.integer)) or steps_per_epoch < 1):
        raise ValueError(f"fit: steps_per_epoch must be an int >= 1 or None, got {steps_per_epoch!r}")
    history = History()
    if resume_from is not None:
        meta = read_header(resume_from)[1]
        done = saved_epoch(meta)
        if done is None:
            raise ValueError(f"fit: {resume_from} does not record the epoch it was saved at")
        if epochs <= done:
            raise ValueError(f"fit: {resume_from} was saved after {done} epochs and epochs={epochs} is the index of "
                             f"the final epoch (Keras's rule), so nothing is left to train: pass epochs > {done}")
        # What the file records for resuming is read now; the weights, optimizer state and random
        # state load once every argument has been checked (a bad one must not change the model).
        seed, saved_history, saved_callbacks, rank_rng, recorded = _resume_record(resume_from, meta, seed)
        if recorded is not None and precision is None:
            policy = recorded  # the run goes on as it was trained
        elif recorded is not None and not policy.same_work(recorded):
            warnings.warn(f"fit: {resume_from} was trained under precision {recorded.name!r} and this run goes on "
                          f"under {policy.name!r} (its checkpoints record {policy.name!r}); leave precision unset to "
                          f"keep {recorded.name!r}", UserWarning, stacklevel=2)
        initial_epoch = done
        history.restore(saved_history)
    elif initial_epoch >= epochs:
        raise ValueError(f"fit: initial_epoch={initial_epoch} leaves no epoch to train before epochs={epochs} "
                         "(epochs is the index of the final epoch, Keras's rule)")
    if seed is None:
        seed = int(default_generator().numpy.integers(0, 2**63 - 1))
    world = None
    if distributed is not False:
        from .distributed.fitting import fit_world

        world = fit_world(distributed)
    if world is not None:
        seed = world.broadcast_object(seed, 0, "fit: seed")

    val_loader = None
    if validation_split:
        if x is None or not hasattr(x, "__len__") or hasattr(x, "dataset"):
            raise ValueError("fit: validation_split needs x and y as arrays")
        xa, ya = _as_array(x, "fit: x"), _as_array(y, "fit: y")
        split = int(math.floor(len(xa) * (1.0 - validation_split)))  # Keras's split, its float rounding included
        if split <= 0 or split >= len(xa):
            raise ValueError(f"fit: validation_split={validation_split} leaves no training or no validation samples "
                             f"out of {len(xa)}")
        x, y, validation_data = xa[:split], ya[:split], (xa[split:], ya[split:])
    train_loader = _loader(x, y, batch_size, shuffle, seed, transform, "fit")
    if validation_data is not None:
        if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            val_loader = _loader(validation_data[0], validation_data[1], max(batch_size, 256), False, 0, None,
                                 "fit: validation_data")
        else:
            val_loader = _loader(validation_data, None, batch_size, False, 0, None, "fit: validation_data")

    sync, step_model = None, model
    if world is not None:
        from .distributed.fitting import FitSync

        sync = FitSync(world, model, train_loader, val_loader)
        train_loader, val_loader, step_model = sync.train_loader, sync.val_loader, sync.ddp
    restore_modes = nn.saved_modes(model)
    interrupted = False
    try:  # from here on, a failure (a callback's, a resume's) also releases the gradient hooks
        loss_fn = compiled.loss if class_weight is None else _class_weighted(compiled.loss, class_weight)
        optimizer, metric_objs = compiled.optimizer, compiled.metrics
        cbs = CallbackList([history, ProgressLogger(verbose), *(callbacks or [])], model=model,
                           params={"epochs": epochs, "fit_seed": seed,
                                   "steps": min(len(train_loader), steps_per_epoch or len(train_loader)),
                                   "optimizer": optimizer, "history": history}, main=world is None or world.rank == 0)
        restored, own_rng = [], None
        if resume_from is not None:
            restored = cbs.checked_states(saved_callbacks, f"fit: {resume_from}")
            if world is not None and isinstance(rank_rng, list) and len(rank_rng) == world.size:
                # This rank's own stream (dropout draws differ between ranks whose shares differ);
                # the file's ember.rng, rank 0's, serves a run resumed on another number of ranks.
                own_rng = checked_rng_state(rank_rng[world.rank], f"fit: {resume_from} rank_rng[{world.rank}]")
            load_checkpoint(resume_from, model, compiled.optimizer)
            if own_rng is not None:
                default_generator().numpy.bit_generator.state = own_rng
        model.stop_training = False
        cbs.on_train_begin()
        for cb, state in restored:  # after on_train_begin, which starts a callback afresh
            cb.load_state_dict(state)
        with _Interrupt() as interrupt, _precision.autocast(policy):
            for epoch in range(initial_epoch, epochs):
                train_loader.set_epoch(epoch)
                cbs.on_epoch_begin(epoch)
                model.train()
                for m in metric_objs:
                    m.reset()
                total, count, start = 0.0, 0, time.perf_counter()
                for step, batch in enumerate(train_loader):
                    xb, yb = _on(dev, batch[:2])
                    n = len(yb)
                    cbs.on_train_batch_begin(step)
                    optimizer.zero_grad()
                    if n:
                        out, loss = _output_and_loss(step_model if loss_fn is not MODEL_LOSS else model, loss_fn,
                                                     xb, yb)
                        (loss if sync is None else loss * sync.loss_weight(step, n, loss_fn)).backward()
                    else:  # this rank's share of a short last batch is empty
                        sync.ddp.sync_without_data()
                    if compiled.clipnorm is not None:
                        for p in model.parameters():
                            nn.utils.clip_grad_norm_(p, compiled.clipnorm)
                    elif compiled.global_clipnorm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), compiled.global_clipnorm)
                    optimizer.step()
                    if n:
                        total += float(loss.item()) * n
                        count += n
                        with no_grad():
                            for m in metric_objs:
                                m.update(yb, out)
                    seen = count if sync is None else sync.global_samples(step + 1)
                    logs = {"loss": total / max(count, 1), "samples_per_s": seen / (time.perf_counter() - start)}
                    if count:
                        for m in metric_objs:
                            logs[m.name] = m.result()
                    cbs.on_train_batch_end(step, logs)
                    stop = interrupt.requested
                    if sync is not None:  # every rank stops after the same step
                        stop = sync.any(stop, "fit: the end of a step")
                        interrupt.requested = stop
                    if stop or step + 1 == steps_per_epoch:
                        break
                if interrupt.requested:
                    interrupted = True
                    break
                elapsed = max(time.perf_counter() - start, 1e-12)
                if sync is not None:
                    total, count = sync.reduce(metric_objs, total, count, "fit: epoch logs")
                    elapsed = sync.world.broadcast_object(elapsed, 0, "fit: epoch time")
                if not count:
                    raise ValueError("fit: the training data holds no samples (an empty data set, or a drop_last "
                                     "loader smaller than one batch)")
                logs = {"loss": total / count}
                for m in metric_objs:
                    logs[m.name] = m.result()
                logs["samples_per_s"] = count / elapsed
                logs["lr"] = optimizer.param_groups[0]["lr"]
                if val_loader is not None:
                    model.eval()
                    val = _run_epoch_eval(model, val_loader, loss_fn if class_weight is None else compiled.loss,
                                          metric_objs, dev, sync, "fit: the validation data")
                    logs.update({f"val_{k}": v for k, v in val.items()})
                if sync is not None:  # for checkpoints: each rank's random state, to resume each rank's stream
                    cbs.params["rank_rng"] = sync.world.all_gather_object(
                        default_generator().numpy.bit_generator.state, "fit: the ranks' random states")
                cbs.on_epoch_end(epoch, logs)
                if model.stop_training if sync is None else sync.any(model.stop_training, "fit: stop_training"):
                    break
    finally:
        restore_modes()
        if sync is not None:
            sync.ddp.release()
    history.interrupted = interrupted
    cbs.on_train_end({"interrupted": interrupted})
    return history


def evaluate(model, x=None, y=None, batch_size=256, verbose=0, return_dict=True, device=None):
    """Loss and metrics over ``x, y`` (or a DataLoader) in evaluation mode: a dict, or with
    ``return_dict=False`` a list [loss, *metrics]. ``device`` as ``fit``'s."""
    compiled = _compiled(model, "evaluate")
    dev = _model_device(model, device)
    loader = _loader(x, y, batch_size, False, 0, None, "evaluate")
    restore_modes = nn.saved_modes(model)
    model.eval()
    try:
        logs = _run_epoch_eval(model, loader, compiled.loss, compiled.metrics, dev)
    finally:
        restore_modes()
    if verbose:
        print(" - ".join(f"{k} {v:.4f}" for k, v in logs.items()))
    return logs if return_dict else list(logs.values())


def predict(model, x, batch_size=256, device=None, verbose=0) -> np.ndarray:
    """The model's outputs for ``x`` (an array, a tensor or a DataLoader whose first field is the
    input), batch by batch in evaluation mode, as one NumPy array. ``device`` as ``fit``'s;
    ``verbose`` is taken for Keras code's sake: predict prints nothing either way."""
    from .data import DataLoader, TensorDataset

    dev = _model_device(model, device)
    if isinstance(x, DataLoader):
        loader = x
    else:
        xa = _as_array(x, "predict: x")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"predict: batch_size must be an int >= 1, got {batch_size!r}")
        loader = DataLoader(TensorDataset(xa), batch_size=int(batch_size), shuffle=False, seed=0)
    restore_modes = nn.saved_modes(model)
    model.eval()
    outs = []
    try:
        with no_grad():
            for batch in loader:
                outs.append(np.array(model(_on(dev, batch[:1])[0])._host(), copy=True))
    finally:
        restore_modes()
    if not outs:
        raise ValueError("predict: x has no samples")
    return np.concatenate(outs)


def _install_keras_methods(cls) -> None:
    """Give ``nn.Module`` Keras's ``compile`` / ``fit`` / ``evaluate`` / ``predict`` (the layer
    below training does not import it; training adds them when Ember is imported)."""

    def compile_(self, optimizer="adam", loss="cross_entropy", metrics=None, lr=None, clipnorm=None,
                 global_clipnorm=None) -> None:
        return compile(self, optimizer, loss, metrics, lr, clipnorm, global_clipnorm)

    def fit_(self, x=None, y=None, **kwargs) -> History:
        return fit(self, x, y, **kwargs)

    def evaluate_(self, x=None, y=None, **kwargs):
        return evaluate(self, x, y, **kwargs)

    def predict_(self, x, batch_size=256, device=None, verbose=0) -> np.ndarray:
        return predict(self, x, batch_size, device, verbose)

    for name, method, source in (("compile", compile_, compile), ("fit", fit_, fit), ("evaluate", evaluate_, evaluate),
                                 ("predict", predict_, predict)):
        method.__name__ = method.__qualname__ = name
        method.__doc__ = source.__doc__
        signature = inspect.signature(source)  # help() shows the real arguments, self in model's place
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        method.__signature__ = signature.replace(parameters=[self_param, *list(signature.parameters.values())[1:]])
        setattr(cls, name, method)


_install_keras_methods(nn.Module)

__all__ = ["Callback", "History", "compile", "evaluate", "fit", "predict"]
