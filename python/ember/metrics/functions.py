"""The metrics as functions of whole arrays, and the checks of their arguments that the
streaming metrics share (the conventions are in the package's description)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from ..autograd.function import Variable

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
