"""Streaming metrics: counts accumulated over batches with ``update``, the function's value over
all of them with ``result``; and ``get``, which turns the names ``compile(metrics=[...])``
takes into metric objects."""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .functions import (_check_average, _check_class_count, _check_k, _check_num_classes, _counts,
                        _labels_and_classes, _scores, _top_k_hits)


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
    over batches, weighted by batch size, and named after the function). A metric made from a
    name takes that very string as its name, as in Keras: ``compile(metrics=["acc"])`` logs
    ``acc`` and ``val_acc``, ``"top5"`` logs ``top5``."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ("accuracy", "acc"):
            metric = Accuracy()
        elif match := _TOP_K_PATTERN.fullmatch(name):
            metric = TopKAccuracy(int(match["k"]))
        elif match := _NAME_PATTERN.fullmatch(name):
            metric = _CONFUSION_METRICS[match["base"]](average=match["average"] or "macro")
        else:
            raise ValueError(f"unknown metric {identifier!r}; accepted names: {ACCEPTED_NAMES}")
        metric.name = identifier
        return metric
    if callable(identifier):
        return _FunctionMetric(identifier)
    raise TypeError(
        f"a metric must be a name, a Metric or a function, got {type(identifier).__name__}"
    )
