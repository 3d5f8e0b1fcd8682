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

from .functions import (accuracy, classification_report, confusion_matrix, f1_score, precision,
                        precision_recall_f1, recall, top_k_accuracy)
from .streaming import Accuracy, F1Score, Metric, Precision, Recall, TopKAccuracy, get

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
