"""Knowledge distillation: a student learns from a teacher's softened outputs as well as the labels.

The loss (Hinton et al.) is ``alpha * T**2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) *
CE(s, y)`` for student logits s, teacher logits t and labels y; the T**2 keeps the soft term's
gradients on the scale of the hard one's as T changes. The KL term runs on Ember's fused
cross-entropy with probability targets (KL and that cross-entropy differ by the teacher's
entropy, a constant; the loss reported includes it, so it is the KL itself).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import backend, nn
from ..autograd import no_grad
from ..nn import functional as F
from .._quant_report import _on_model_device
from ..tensor import Tensor


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class DistillationLoss:
    """``loss(student_logits, teacher_logits, target)``: the distillation loss above, averaged
    over the batch. ``temperature`` > 0; ``alpha`` in [0, 1] weighs the soft term."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9):
        self.temperature = _number("DistillationLoss: temperature", temperature)
        self.alpha = _number("DistillationLoss: alpha", alpha)
        if not self.temperature > 0:
            raise ValueError(f"DistillationLoss: temperature must be > 0, got {temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DistillationLoss: alpha must be in [0, 1], got {alpha!r}")

    def __call__(self, student: Tensor, teacher, target) -> Tensor:
        t = teacher._data if isinstance(teacher, Tensor) else teacher
        if tuple(t.shape) != tuple(student.shape):
            raise ValueError(f"DistillationLoss: teacher logits of shape {tuple(t.shape)} for student logits of "
                             f"shape {tuple(student.shape)}")
        xp = backend.namespace(t)
        T = self.temperature
        scaled = t.astype(np.float32) / T
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        p = xp.exp(scaled)
        p /= p.sum(axis=1, keepdims=True)
        log_p = scaled - xp.log(xp.exp(scaled).sum(axis=1, keepdims=True))
        entropy = float(-(p * log_p).sum(axis=1).mean())
        soft = F.cross_entropy(student * (1.0 / T), Tensor._wrap(p)) - entropy  # KL(p || softmax(s / T))
        loss = soft * (self.alpha * T * T)
        if self.alpha < 1.0:
            loss = loss + F.cross_entropy(student, target) * (1.0 - self.alpha)
        return loss

    def __repr__(self) -> str:
        return f"DistillationLoss(temperature={self.temperature:g}, alpha={self.alpha:g})"


def logits_forward(model):
    """A function giving ``model``'s logits for a batch: the model itself, except for a model
    whose last step turns its logits into probabilities -- an ``nn.Sequential`` chain ending in
    ``nn.Softmax`` over the classes of its (N, classes) outputs (dim 1, -1 or the implicit one),
    or an ``ember.keras`` Sequential whose last layer has a softmax activation --, which runs
    without that softmax."""
    from ..keras.layers import Layer
    from ..keras.models import Sequential as KerasSequential
    from .report import _leaves

    if isinstance(model, KerasSequential):
        last = model.layers[-1] if model.layers else None
        if not (isinstance(last, Layer) and str(last.activation_name).lower() == "softmax"):
            return model

        def keras_logits(x):
            fold = model._fold_softmax
            object.__setattr__(model, "_fold_softmax", True)  # the last layer's logits, as its fit uses
            try:
                with model._logits(True):
                    return model(x)
            finally:
                object.__setattr__(model, "_fold_softmax", fold)

        return keras_logits
    try:
        layers = _leaves(model)
    except ValueError:  # not a chain of layers: its own forward
        return model
    if not layers or not isinstance(layers[-1], nn.Softmax) or layers[-1].dim not in (1, -1, None):
        return model
    head = nn.Sequential(*layers[:-1])  # the same layers, without the softmax
    object.__setattr__(head, "training", model.training)  # its own mode only: the layers keep theirs
    return head


class _TeacherCache:
    """The teacher's logits for every input it will be shown, computed once and found again by
    the input's contents (so batching, shuffling and prefetching do not matter; an input it has
    not seen is passed to the teacher)."""

    def __init__(self, teacher, x, batch: int = 256):
        self.teacher, self.outputs = logits_forward(teacher), {}
        with no_grad():
            for lo in range(0, len(x), batch):
                rows = np.ascontiguousarray(x[lo:lo + batch], np.float32)
                out = self.teacher(_on_model_device(teacher, rows))._host()
                for row, o in zip(rows, out):
                    self.outputs[self._key(row)] = o

    @staticmethod
    def _key(row) -> bytes:
        return hashlib.blake2b(row.tobytes(), digest_size=16).digest()

    def __call__(self, xb: Tensor) -> Tensor:
        rows = np.ascontiguousarray(xb._host(), np.float32)
        found = [self.outputs.get(self._key(r)) for r in rows]
        if any(o is None for o in found):
            with no_grad():
                return self.teacher(xb)
        host = np.stack(found)
        dev = backend.device_of(xb._data)
        return Tensor._wrap(host if dev is backend.CPU else dev.from_host(host))


def distill(teacher, student, x, y, temperature: float = 4.0, alpha: float = 0.9, epochs: int = 10,
            batch_size: int = 64, optimizer="adam", lr: float | None = None, metrics=("accuracy",),
            cache_teacher: bool = False, **fit_kwargs):
    """Train ``student`` on ``(x, y)`` (arrays, or a DataLoader as ``x`` with ``y=None``) to match
    ``teacher``'s logits as well as the labels, through ``fit`` -- so its callbacks, validation,
    metrics, checkpoints, augmentation (``transform=``; the teacher sees the same augmented batch)
    and precision all apply (``fit_kwargs``). The teacher runs in evaluation mode without
    recording a graph, on every training batch (a teacher ending in a softmax without it, so that
    the loss sees its logits: see ``logits_forward``) -- or, with ``cache_teacher`` (arrays without
    augmentation only), once per input before training, its outputs reused in every epoch.
    Validation and ``evaluate`` afterwards use the plain cross-entropy. The student is compiled
    with ``optimizer`` / ``lr`` / ``metrics`` and trained in place; returns fit's ``History``.
    A failure before the first training step (a bad optimizer name, inputs the teacher cannot
    take, fit's own checks) leaves the student's compile as it was; the teacher's modes are
    restored however distillation ends."""
    if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
        raise TypeError("distill: teacher and student must be ember.nn.Module models, got "
                        f"{type(teacher).__name__} and {type(student).__name__}")
    if teacher is student:
        raise ValueError("distill: the teacher and the student must be different models")
    if not isinstance(cache_teacher, bool):
        raise TypeError(f"distill: cache_teacher must be True or False, got {cache_teacher!r}")
    loss = DistillationLoss(temperature, alpha)
    if cache_teacher and (fit_kwargs.get("transform") is not None or not hasattr(x, "shape")):
        raise ValueError("distill: cache_teacher needs x as an array and no transform (augmented inputs differ "
                         "from epoch to epoch, so the teacher must see each one)")
    stash, started = {}, [False]
    plain = type(student).forward
    restore_teacher_modes = nn.saved_modes(teacher)
    previous = student.__dict__.get("_compiled")
    run_teacher = None  # the teacher's logits, once it is in evaluation mode

    def forward(*args, **kwargs):
        out = plain(student, *args, **kwargs)
        if student.training:
            with no_grad():
                stash["teacher"] = run_teacher(*args, **kwargs)
            started[0] = True
        return out

    def loss_fn(out, target):
        if student.training and "teacher" in stash:
            return loss(out, stash.pop("teacher"), target)
        return F.cross_entropy(out, target)

    try:
        student.compile(optimizer=optimizer, lr=lr, loss=loss_fn, metrics=list(metrics))
        teacher.eval()
        run_teacher = (_TeacherCache(teacher, x._host() if isinstance(x, Tensor) else np.asarray(x)) if cache_teacher
                       else logits_forward(teacher))
        object.__setattr__(student, "forward", forward)
        return student.fit(x, y, batch_size=batch_size, epochs=epochs, **fit_kwargs)
    except BaseException:
        if not started[0]:
            if previous is None:
                student.__dict__.pop("_compiled", None)
            else:
                object.__setattr__(student, "_compiled", previous)
        raise
    finally:
        student.__dict__.pop("forward", None)
        restore_teacher_modes()
