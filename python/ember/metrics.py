"""Classification metrics: functions on whole arrays and streaming metrics for training loops.

Every function takes ``y_true`` (integer class labels, 1-D or Keras's (N, 1); or the one-hot
or probability rows the categorical losses take, read as their argmax) and ``y_pred``, which is either
1-D integer labels or 2-D scores of shape ``(N, C)`` (logits or probabilities; the prediction
is the argmax over the classes). Anything ``np.asarray`` accepts will do, ember Tensors
included. Booleans count as the labels 0 and 1.

Design: the precision/recall/F1 family is computed from three per-class counts (true
positives, predictions and support, each one ``np.bincount``), so the per-class scores and
every average of them come from the same counts, in memory that grows with the number of
classes, not its square. Inferred classes with large, sparse ids (product codes) are counted
by the ids present rather than by every id up to the largest. ``accuracy`` counts matches directly (the
same number as the matrix's trace over its total, without building a ``C x C`` matrix), and
``top_k_accuracy`` ranks each true class's score among its row.

Conventions, chosen to agree with scikit-learn's defaults:

* A class that is never predicted has precision 0.0, one that never occurs in ``y_true`` has
  recall 0.0, and one with neither has F1 0.0 (scikit-learn's ``zero_division=0``).
* ``average="macro"`` averages over the classes present in ``y_true`` or in the predictions
  when ``num_classes`` is inferred, and over all ``num_classes`` classes when it is given.
  ``"weighted"`` weights each class by its support; ``"micro"`` pools the counts of all
  classes (for single-label data it equals the accuracy); ``None`` returns the per-class
  array indexed by class id, absent classes scoring 0.0.

The streaming metrics (:class:`Accuracy`, :class:`TopKAccuracy`, :class:`Precision`,
:class:`Recall`, :class:`F1Score`) accumulate counts over batches with ``update`` and give
exactly the function's value over all the data seen with ``result``; :func:`get` turns the
names used in ``model.compile(metrics=[...])`` into metric objects.
"""

from __future__ import annotations

import abc
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

from .autograd.function import Variable

__all__ = [
    "Accuracy",
    "F1Score",
    "Metric",
    "Precision",
    "Recall",
    "TopKAccuracy",
    "accuracy",
    "classification_report",
    "confusion_matrix",
    "f1_score",
    "get",
    "precision",
    "precision_recall_f1",
    "recall",
    "top_k_accuracy",
]

AVERAGES = ("macro", "micro", "weighted", None)

Score = Union[float, np.ndarray]  # (Python 3.9 has no X | Y outside annotations)


# --------------------------------------------------------------------------- validation
def _host(y: Any):
    """Tensors on any device as host arrays (metrics are computed on the host)."""
    return y._host() if isinstance(y, Variable) else y


def _as_labels(y: Any, name: str, hint: str = "") -> np.ndarray:
    """``y`` as a non-empty 1-D int64 array of non-negative whole-number labels."""
    arr = np.asarray(_host(y))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one sample")
    if arr.dtype.kind == "f":
        bad = arr[~np.isfinite(arr) | (arr != np.floor(arr))]
        if bad.size:
            raise ValueError(f"{name} must hold integer class labels, got the value {bad[0]}{hint}")
    elif arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    labels = arr.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{name} has the negative label {labels.min()}: labels must be 0..C-1")
    return labels


def _as_true_labels(y_true: Any) -> np.ndarray:
    """Class labels from what the losses take as targets: labels (N,) or Keras's (N, 1), or
    one-hot / probability rows (N, C), whose labels are their argmax."""
    arr = np.asarray(_host(y_true))
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    elif arr.ndim == 2:
        rows = _as_scores(arr, "y_true (one-hot or probability rows)")
        if (rows < 0).any() or not np.allclose(rows.sum(axis=1), 1.0, rtol=0, atol=1e-3):
            raise ValueError(f"y_true must be a 1-D array of class labels or (N, C) one-hot / probability rows, got "
                             f"shape {arr.shape} with rows that are not probabilities (are y_true and y_pred swapped?)")
        arr = rows.argmax(axis=1)
    return _as_labels(arr, "y_true")


def _as_predictions(y_pred: Any) -> tuple[np.ndarray, int | None]:
    """Predicted labels from 1-D labels or 2-D scores, and the number of score columns (or None)."""
    arr = np.asarray(_host(y_pred))
    if arr.ndim == 1:
        hint = " (a 1-D float y_pred is read as labels; pass scores as a 2-D (N, C) array)"
        return _as_labels(arr, "y_pred", hint), None
    if arr.ndim != 2:
        raise ValueError(
            f"y_pred must be 1-D labels or 2-D scores of shape (N, C), got a {arr.ndim}-D array "
            f"of shape {arr.shape}"
        )
    return _as_scores(arr, "y_pred").argmax(axis=1).astype(np.int64), arr.shape[1]


def _as_scores(scores: Any, name: str) -> np.ndarray:
    """A non-empty numeric 2-D ``(N, C)`` array without NaN."""
    arr = np.asarray(_host(scores))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D scores of shape (N, C), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numeric scores, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: metrics need at least one sample")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no score columns: shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN scores")
    return arr


def _check_lengths(t: np.ndarray, p: np.ndarray, pred_name: str = "y_pred") -> None:
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} samples but {pred_name} has {len(p)}")


def _check_num_classes(num_classes: int) -> int:
    num_classes = operator.index(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return num_classes


def _check_average(average: str | None) -> None:
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")


def _check_k(k: int) -> int:
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


def _labels_and_classes(
    y_true: Any, y_pred: Any, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated true and predicted labels and the number of classes C (given or inferred)."""
    t = _as_true_labels(y_true)
    p, columns = _as_predictions(y_pred)
    _check_lengths(t, p)
    if num_classes is not None:
        num_classes = _check_num_classes(num_classes)
        if columns is not None and columns != num_classes:
            raise ValueError(f"y_pred has {columns} score columns but num_classes is {num_classes}")
        limit = f"num_classes is {num_classes}"
    elif columns is not None:
        num_classes = columns
        limit = f"y_pred has {columns} score columns"
    else:
        return t, p, int(max(t.max(), p.max())) + 1
    for labels, name in ((t, "y_true"), (p, "y_pred")):
        if labels.max() >= num_classes:
            raise ValueError(f"{name} has the label {labels.max()} but {limit}")
    return t, p, num_classes


# --------------------------------------------------------------------------- functions
MAX_CLASSES = 2**24  # per-class counts beyond this are refused (three int64 arrays of 128 MiB)
MAX_MATRIX_CELLS = 2**28  # a confusion matrix beyond this (2 GiB of int64) is refused


def _check_class_count(num_classes: int, what: str) -> None:
    if num_classes > MAX_CLASSES:
        raise ValueError(f"{what}: {num_classes} classes (labels 0..{num_classes - 1}) are more than the "
                         f"{MAX_CLASSES} Ember counts per class; relabel the classes 0..C-1")


def _counts(t: np.ndarray, p: np.ndarray, num_classes: int) -> np.ndarray:
    """(3, C) int64: per class, the true positives, the predictions and the support."""
    _check_class_count(num_classes, "metrics")
    return np.stack([np.bincount(t[t == p], minlength=num_classes), np.bincount(p, minlength=num_classes),
                     np.bincount(t, minlength=num_classes)]).astype(np.int64, copy=False)


def _present_counts(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The counts of the classes present in ``t`` or ``p`` only (for averages over them), without
    a slot for every id up to the largest."""
    present, ids = np.unique(np.concatenate([t, p]), return_inverse=True)
    return _counts(ids[:t.size].reshape(-1), ids[t.size:].reshape(-1), present.size)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """The ``(C, C)`` int64 confusion matrix: ``m[i, j]`` counts samples of class i predicted j.

    C is ``num_classes`` when given, else the number of score columns of a 2-D ``y_pred``,
    else the largest label in either input plus one.
    """
    t, p, num_classes = _labels_and_classes(y_true, y_pred, num_classes)
    if num_classes * num_classes > MAX_MATRIX_CELLS:
        raise ValueError(f"confusion_matrix: {num_classes} classes make a {num_classes} x {num_classes} matrix, "
                         f"more than the {MAX_MATRIX_CELLS} cells allowed; use precision_recall_f1(average=None) "
                         "for per-class scores, or relabel the classes 0..C-1")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The fraction of samples whose predicted label equals the true one."""
    t, p, _ = _labels_and_classes(y_true, y_pred, None)
    return np.count_nonzero(t == p) / t.size


def _top_k_hits(y_true: Any, scores: Any, k: int, name: str = "scores") -> tuple[int, int]:
    """(samples whose true class ranks in the top k, samples); see :func:`top_k_accuracy`."""
    k = _check_k(k)
    t = _as_true_labels(y_true)
    arr = _as_scores(scores, name)
    _check_lengths(t, arr, name)
    if t.max() >= arr.shape[1]:
        raise ValueError(
            f"y_true has the label {t.max()} but {name} has {arr.shape[1]} score columns"
        )
    true_score = arr[np.arange(t.size), t]
    rank = np.count_nonzero(arr > true_score[:, None], axis=1)
    return int(np.count_nonzero(rank < k)), t.size


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """The fraction of samples whose true class is among the ``k`` highest of its ``(N, C)`` scores.

    Ties count in the true class's favour: a sample is a hit when fewer than ``k`` classes
    score strictly higher than its true class, so with every score equal every sample is a hit.
    For ``k >= C`` every sample is a hit.
    """
    hits, total = _top_k_hits(y_true, scores, k)
    return hits / total


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with 0.0 where the denominator is 0."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _scores(
    counts: np.ndarray, average: str | None, all_classes: bool
) -> tuple[Score, Score, Score]:
    """Precision, recall and F1 from per-class counts (``_counts``), averaged as ``average`` says.

    ``all_classes``: macro-average over every class counted rather than over the classes
    that occur in the truth or the predictions.
    """
    tp, predicted, support = counts
    if average == "micro":
        tp, predicted, support = (counts.sum(keepdims=True) for counts in (tp, predicted, support))
    p = _divide(tp, predicted)
    r = _divide(tp, support)
    f1 = _divide(2 * tp, support + predicted)
    if average is None:
        return p, r, f1
    if average == "micro":
        return float(p[0]), float(r[0]), float(f1[0])
    if average == "weighted":
        return tuple(float(np.average(s, weights=support)) for s in (p, r, f1))
    present = slice(None) if all_classes else (support + predicted) > 0
    return tuple(float(s[present].mean()) for s in (p, r, f1))


def precision_recall_f1(
    y_true: Any, y_pred: Any, average: str | None = "macro", num_classes: int | None = None
) -> tuple[Score, Score, Score]:
    """Precision, recall and F1 from one set of per-class counts (true positives, predictions,
    support).

    ``average``: "macro" (unweighted mean over classes), "micro" (from the pooled counts),
    "weighted" (mean weighted by each class's support) or None (per-class arrays of length C,
    indexed by class id). Macro averages over the classes present in ``y_true`` or the
    predictions when ``num_classes`` is inferred, over all ``num_classes`` when it is given.
    A zero denominator gives 0.0.
    """
    _check_average(average)
    t, p, num_classes_ = _labels_and_classes(y_true, y_pred, num_classes)
    if average is not None and num_classes is None and num_classes_ > 2 * t.size:  # sparse ids
        return _scores(_present_counts(t, p), average, all_classes=False)
    return _scores(_counts(t, p, num_classes_), average, all_classes=num_classes is not None)


def precision(
    y_true: Any, y_pred: Any, average: str | None = "macro", num_classes: int | None = None
) -> Score:
    """Of the samples predicted as a class, the fraction that belong to it; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, num_classes)[0]


def recall(
    y_true: Any, y_pred: Any, average: str | None = "macro", num_classes: int | None = None
) -> Score:
    """Of the samples of a class, the fraction predicted as it; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, num_classes)[1]


def f1_score(
    y_true: Any, y_pred: Any, average: str | None = "macro", num_classes: int | None = None
) -> Score:
    """The harmonic mean of precision and recall; see :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, average, num_classes)[2]


def classification_report(
    y_true: Any,
    y_pred: Any,
    target_names: Sequence[str] | None = None,
    digits: int = 3,
    num_classes: int | None = None,
) -> str:
    """A table of per-class precision, recall, F1 and support, then accuracy and the averages.

    The rows are the classes that "macro" averages over: those present in ``y_true`` or the
    predictions when ``num_classes`` is inferred, all ``num_classes`` when it is given.
    ``target_names[i]`` names class i; it must name every class (exactly ``num_classes`` names
    when that is given).
    """
    t, p, num_classes_ = _labels_and_classes(y_true, y_pred, num_classes)
    if target_names is None:
        names = [str(c) for c in range(num_classes_)]
    else:
        names = [str(name) for name in target_names]
        if len(names) < num_classes_ or (num_classes is not None and len(names) != num_classes_):
            raise ValueError(
                f"target_names has {len(names)} names but there are {num_classes_} classes"
            )
    counts = _counts(t, p, num_classes_)
    per_class = _scores(counts, None, all_classes=True)
    tp, predicted, support = counts
    all_classes = num_classes is not None
    shown = range(num_classes_) if all_classes else np.flatnonzero(support + predicted)
    name_width = max([len("weighted avg")] + [len(names[c]) for c in shown])
    width = max(len("precision"), digits + 3)

    def row(name: str, values: Sequence[float | None], count: int) -> str:
        cells = ["" if v is None else f"{v:.{digits}f}" for v in values]
        return (
            f"{name:>{name_width}} "
            + " ".join(f"{c:>{width}}" for c in cells)
            + f" {count:>{width}}"
        )

    header = (
        " " * name_width
        + " "
        + " ".join(f"{h:>{width}}" for h in ("precision", "recall", "f1-score", "support"))
    )
    lines = [header, ""]
    lines += [row(names[c], [s[c] for s in per_class], int(support[c])) for c in shown]
    total = int(support.sum())
    lines += [
        "",
        row("accuracy", [None, None, float(tp.sum()) / total], total),
        row("macro avg", _scores(counts, "macro", all_classes), total),
        row("weighted avg", _scores(counts, "weighted", all_classes), total),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- streaming
class Metric(abc.ABC):
    """A metric accumulated over batches: ``update`` per batch, ``result`` over all of them.

    ``y_true`` and ``y_pred`` are what the functions take (arrays or ember Tensors; 2-D
    ``y_pred`` scores are argmaxed). ``name`` labels the value in training logs.
    """

    name: str

    @abc.abstractmethod
    def update(self, y_true: Any, y_pred: Any) -> None:
        """Add a batch."""

    @abc.abstractmethod
    def result(self) -> float:
        """The metric over every sample added since the last reset."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every batch added so far."""

    def state(self) -> dict:
        """The counts ``result`` is computed from, as a dict of numbers or arrays that add up
        across parts of the data (distributed training sums every rank's with ``merge_state``).
        A metric of your own defines this and ``merge_state`` to be used with several ranks."""
        raise NotImplementedError(f"metric {self.name!r} ({type(self).__name__}) defines no state() and "
                                  "merge_state(), so it cannot be combined across ranks")

    def merge_state(self, state: dict) -> None:
        """Add the counts of another part of the data (what its ``state()`` returned)."""
        raise NotImplementedError(f"metric {self.name!r} ({type(self).__name__}) defines no state() and "
                                  "merge_state(), so it cannot be combined across ranks")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _no_samples(metric: Metric) -> ValueError:
    return ValueError(f"{metric.name}: no samples yet, call update() first")


class Accuracy(Metric):
    """Running :func:`accuracy`."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def update(self, y_true: Any, y_pred: Any) -> None:
        t, p, _ = _labels_and_classes(y_true, y_pred, None)
        self.correct += int(np.count_nonzero(t == p))
        self.total += t.size

    def result(self) -> float:
        if self.total == 0:
            raise _no_samples(self)
        return self.correct / self.total

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def state(self) -> dict:
        return {"correct": self.correct, "total": self.total}

    def merge_state(self, state: dict) -> None:
        self.correct += int(state["correct"])
        self.total += int(state["total"])


class TopKAccuracy(Metric):
    """Running :func:`top_k_accuracy`; ``y_pred`` must be 2-D scores. Named ``f"top{k}_accuracy"``."""

    def __init__(self, k: int = 5) -> None:
        self.k = _check_k(k)
        self.name = f"top{self.k}_accuracy"
        self.reset()

    def update(self, y_true: Any, y_pred: Any) -> None:
        hits, total = _top_k_hits(y_true, y_pred, self.k, "y_pred")
        self.hits += hits
        self.total += total

    def result(self) -> float:
        if self.total == 0:
            raise _no_samples(self)
        return self.hits / self.total

    def reset(self) -> None:
        self.hits = 0
        self.total = 0

    def state(self) -> dict:
        return {"hits": self.hits, "total": self.total}

    def merge_state(self, state: dict) -> None:
        self.hits += int(state["hits"])
        self.total += int(state["total"])


class _ConfusionMetric(Metric):
    """Accumulates per-class counts (true positives, predictions, support), grown as new classes
    appear unless ``num_classes`` is fixed."""

    base_name = ""
    index = 0  # position in (precision, recall, f1)

    def __init__(self, average: str = "macro", num_classes: int | None = None) -> None:
        _check_average(average)
        if average is None:
            raise ValueError(
                f"{type(self).__name__} needs an average that gives one number, not None"
            )
        self.average = average
        self.num_classes = None if num_classes is None else _check_num_classes(num_classes)
        self.name = self.base_name if average == "macro" else f"{self.base_name}_{average}"
        self.reset()

    def _grow(self, num_classes: int) -> None:
        if num_classes > self.counts.shape[1]:
            self.counts = np.pad(self.counts, ((0, 0), (0, num_classes - self.counts.shape[1])))

    def update(self, y_true: Any, y_pred: Any) -> None:
        t, p, num_classes = _labels_and_classes(y_true, y_pred, self.num_classes)
        _check_class_count(num_classes, self.name)  # before anything is added
        self._grow(num_classes)
        self.counts += _counts(t, p, self.counts.shape[1])

    def result(self) -> float:
        if self.counts[2].sum() == 0:
            raise _no_samples(self)
        scores = _scores(self.counts, self.average, all_classes=self.num_classes is not None)
        return scores[self.index]

    def reset(self) -> None:
        self.counts = np.zeros((3, self.num_classes or 0), dtype=np.int64)

    def state(self) -> dict:
        return {"counts": self.counts.copy()}

    def merge_state(self, state: dict) -> None:
        other = np.asarray(state["counts"], np.int64)
        if other.ndim != 2 or other.shape[0] != 3:
            raise ValueError(f"{self.name}: merge_state needs the (3, C) counts another {type(self).__name__}'s "
                             f"state() gives, got shape {other.shape}")
        self._grow(other.shape[1])
        self.counts[:, :other.shape[1]] += other


class Precision(_ConfusionMetric):
    """Running :func:`precision`; named "precision", or e.g. "precision_micro" for other averages."""

    base_name = "precision"
    index = 0


class Recall(_ConfusionMetric):
    """Running :func:`recall`; named "recall", or e.g. "recall_weighted" for other averages."""

    base_name = "recall"
    index = 1


class F1Score(_ConfusionMetric):
    """Running :func:`f1_score`; named "f1", or e.g. "f1_micro" for other averages."""

    base_name = "f1"
    index = 2


class _FunctionMetric(Metric):
    """Wraps ``fn(y_true, y_pred) -> float``: the mean of its batch values weighted by batch size."""

    def __init__(self, fn: Callable[[Any, Any], float]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.reset()

    def update(self, y_true: Any, y_pred: Any) -> None:
        size = np.shape(y_true)[0]
        self.weighted_sum += float(self.fn(y_true, y_pred)) * size
        self.total += size

    def result(self) -> float:
        if self.total == 0:
            raise _no_samples(self)
        return self.weighted_sum / self.total

    def reset(self) -> None:
        self.weighted_sum = 0.0
        self.total = 0

    def state(self) -> dict:
        return {"weighted_sum": self.weighted_sum, "total": self.total}

    def merge_state(self, state: dict) -> None:
        self.weighted_sum += float(state["weighted_sum"])
        self.total += int(state["total"])


_CONFUSION_METRICS = {"precision": Precision, "recall": Recall, "f1": F1Score, "f1_score": F1Score}
_NAME_PATTERN = re.compile(
    r"(?P<base>precision|recall|f1_score|f1)(?:_(?P<average>macro|micro|weighted))?"
)
_TOP_K_PATTERN = re.compile(r"top_?(?P<k>\d+)(?:_accuracy)?")
ACCEPTED_NAMES = (
    "accuracy, acc, top{k} / top_{k} / top{k}_accuracy / top_{k}_accuracy (e.g. top5), "
    "precision, recall, f1, f1_score, each of the last four optionally suffixed with "
    "_macro, _micro or _weighted"
)


def get(identifier: str | Metric | type[Metric] | Callable[[Any, Any], float]) -> Metric:
    """A metric object from a name, a Metric instance (returned as is), a Metric subclass
    (instantiated with its defaults) or a function ``fn(y_true, y_pred) -> float`` (averaged
    over batches, weighted by batch size, and named after the function)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ("accuracy", "acc"):
            return Accuracy()
        if match := _TOP_K_PATTERN.fullmatch(name):
            return TopKAccuracy(int(match["k"]))
        if match := _NAME_PATTERN.fullmatch(name):
            return _CONFUSION_METRICS[match["base"]](average=match["average"] or "macro")
        raise ValueError(f"unknown metric {identifier!r}; accepted names: {ACCEPTED_NAMES}")
    if callable(identifier):
        return _FunctionMetric(identifier)
    raise TypeError(
        f"a metric must be a name, a Metric or a function, got {type(identifier).__name__}"
    )
