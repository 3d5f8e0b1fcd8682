"""ember.metrics: hand-computed scores, agreement with scikit-learn (when installed), score and
Tensor inputs, streaming metrics against the functions, ``get``, the report and input errors."""

import numpy as np
import pytest

import ember
from ember import metrics

AVERAGES = ("macro", "micro", "weighted")

# A 3-class example worked out by hand:
#   y_true 0 1 2 2 1 0 2
#   y_pred 0 2 2 1 1 0 0
# confusion matrix (rows true, columns predicted):
#   [[2, 0, 0],
#    [0, 1, 1],
#    [1, 1, 1]]
# tp = (2, 1, 1), predicted = column sums (3, 2, 2), support = row sums (2, 2, 3)
HAND_TRUE = [0, 1, 2, 2, 1, 0, 2]
HAND_PRED = [0, 2, 2, 1, 1, 0, 0]


def _approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def test_hand_computed_three_classes():
    np.testing.assert_array_equal(
        metrics.confusion_matrix(HAND_TRUE, HAND_PRED), [[2, 0, 0], [0, 1, 1], [1, 1, 1]]
    )
    assert metrics.confusion_matrix(HAND_TRUE, HAND_PRED).dtype == np.int64
    assert metrics.accuracy(HAND_TRUE, HAND_PRED) == _approx(4 / 7)

    p, r, f1 = metrics.precision_recall_f1(HAND_TRUE, HAND_PRED, average=None)
    assert p.tolist() == _approx([2 / 3, 1 / 2, 1 / 2])  # tp / predicted
    assert r.tolist() == _approx([1, 1 / 2, 1 / 3])  # tp / support
    assert f1.tolist() == _approx([4 / 5, 2 / 4, 2 / 5])  # 2 tp / (predicted + support)

    assert metrics.precision(HAND_TRUE, HAND_PRED) == _approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert metrics.recall(HAND_TRUE, HAND_PRED) == _approx((1 + 1 / 2 + 1 / 3) / 3)
    assert metrics.f1_score(HAND_TRUE, HAND_PRED) == _approx((4 / 5 + 1 / 2 + 2 / 5) / 3)

    # micro: pooled tp / pooled predicted = pooled tp / pooled support = accuracy
    for fn in (metrics.precision, metrics.recall, metrics.f1_score):
        assert fn(HAND_TRUE, HAND_PRED, average="micro") == _approx(4 / 7)

    # weighted by support (2, 2, 3) over 7 samples
    assert metrics.precision(HAND_TRUE, HAND_PRED, "weighted") == _approx(
        (2 * 2 / 3 + 2 * 1 / 2 + 3 * 1 / 2) / 7
    )
    assert metrics.recall(HAND_TRUE, HAND_PRED, "weighted") == _approx((2 * 1 + 2 / 2 + 3 / 3) / 7)
    assert metrics.f1_score(HAND_TRUE, HAND_PRED, "weighted") == _approx(
        (2 * 4 / 5 + 2 * 1 / 2 + 3 * 2 / 5) / 7
    )
    assert isinstance(metrics.precision(HAND_TRUE, HAND_PRED), float)


def test_zero_division_and_macro_classes():
    # class 1 is never predicted, class 2 is predicted but never true, class 3 appears nowhere
    y_true, y_pred = [0, 0, 1, 0], [0, 0, 2, 2]
    p, r, f1 = metrics.precision_recall_f1(y_true, y_pred, average=None, num_classes=4)
    assert p.tolist() == _approx([1, 0, 0, 0])
    assert r.tolist() == _approx([2 / 3, 0, 0, 0])
    assert f1.tolist() == _approx([4 / 5, 0, 0, 0])
    # inferred: macro over the classes that occur somewhere (0, 1, 2)
    assert metrics.precision(y_true, y_pred) == _approx(1 / 3)
    assert metrics.recall(y_true, y_pred) == _approx(2 / 9)
    assert metrics.f1_score(y_true, y_pred) == _approx(4 / 15)
    # explicit num_classes: macro over all 4
    assert metrics.precision(y_true, y_pred, num_classes=4) == _approx(1 / 4)
    assert metrics.f1_score(y_true, y_pred, num_classes=4) == _approx(1 / 5)
    # inferred C is the largest label + 1; a gap in the labels is left out of macro too
    assert metrics.precision([0, 3], [0, 3]) == 1.0
    assert metrics.confusion_matrix([0, 3], [0, 3]).shape == (4, 4)


def _random_case(rng, n=300, num_classes=7):
    """Labels 0..6 where class 2 appears nowhere, class 4 is never predicted and class 5 never
    true, with continuous (tie-free) scores whose argmax is y_pred."""
    y_true = rng.choice([0, 1, 3, 4, 6], size=n)
    y_pred = np.where(rng.random(n) < 0.4, y_true, rng.choice([0, 1, 3, 5, 6], size=n))
    y_pred[y_pred == 4] = 5
    scores = rng.random((n, num_classes))
    scores[np.arange(n), y_pred] += 1.0
    return y_true, y_pred, scores


def test_matches_sklearn(rng):
    pytest.importorskip("sklearn")
    from sklearn import metrics as skm

    y_true, y_pred, scores = _random_case(rng)
    C = scores.shape[1]
    assert 4 not in y_pred and 5 not in y_true and 2 not in y_true and 2 not in y_pred

    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred, labels=range(C))
    )
    assert metrics.accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
    pairs = [
        (metrics.precision, skm.precision_score),
        (metrics.recall, skm.recall_score),
        (metrics.f1_score, skm.f1_score),
    ]
    for ours, theirs in pairs:
        for average in AVERAGES:
            assert ours(y_true, y_pred, average) == theirs(
                y_true, y_pred, average=average, zero_division=0
            ), (ours.__name__, average)
            assert ours(y_true, y_pred, average, num_classes=C) == theirs(
                y_true, y_pred, average=average, labels=range(C), zero_division=0
            ), (ours.__name__, average, "labels=range(C)")
        np.testing.assert_array_equal(
            ours(y_true, y_pred, None),
            theirs(y_true, y_pred, average=None, labels=range(C), zero_division=0),
        )
    for k in (1, 2, 3, 5, C - 1):
        assert metrics.top_k_accuracy(y_true, scores, k) == skm.top_k_accuracy_score(
            y_true, scores, k=k, labels=range(C)
        ), k

    report = _parse_report(metrics.classification_report(y_true, y_pred))
    expected = skm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert report["accuracy"] == (None, None, round(expected["accuracy"], 3), len(y_true))
    for row, values in report.items():
        if row != "accuracy":
            want = expected[row]
            assert values == (
                round(want["precision"], 3),
                round(want["recall"], 3),
                round(want["f1-score"], 3),
                want["support"],
            ), row


def test_scores_and_tensors_equal_labels(rng):
    y_true, y_pred, scores = _random_case(rng, n=60)
    assert (scores.argmax(1) == y_pred).all()
    inputs = [scores, scores.astype(np.float32), ember.tensor(scores.astype(np.float32))]
    for y_scores in inputs:
        for truth in (y_true, ember.tensor(y_true)):
            np.testing.assert_array_equal(
                metrics.confusion_matrix(truth, y_scores), metrics.confusion_matrix(y_true, y_pred)
            )
            assert metrics.accuracy(truth, y_scores) == metrics.accuracy(y_true, y_pred)
            for average in AVERAGES:
                assert metrics.precision_recall_f1(truth, y_scores, average) == (
                    metrics.precision_recall_f1(y_true, y_pred, average)
                )
    assert metrics.f1_score(y_true, ember.tensor(y_pred)) == metrics.f1_score(y_true, y_pred)
    assert metrics.top_k_accuracy(ember.tensor(y_true), ember.tensor(scores), 3) == (
        metrics.top_k_accuracy(y_true, scores, 3)
    )
    # booleans are the labels 0 and 1; whole-number floats are labels too
    assert metrics.accuracy([True, False, True], [1, 0, 0]) == _approx(2 / 3)
    assert metrics.accuracy(np.array([0.0, 2.0]), np.array([0.0, 1.0])) == 0.5


def test_top_k_ties_favour_the_true_class():
    scores = np.array([[1.0, 2.0, 2.0], [3.0, 3.0, 3.0], [0.0, 5.0, 1.0]])
    # ranks of the true classes: 0 has two larger scores; 1 and its tie have none; 2 has one
    assert metrics.top_k_accuracy([0, 1, 2], scores, k=1) == _approx(1 / 3)
    assert metrics.top_k_accuracy([1, 2, 0], scores, k=1) == _approx(2 / 3)
    assert metrics.top_k_accuracy([0, 1, 2], scores, k=2) == _approx(2 / 3)
    assert metrics.top_k_accuracy([0, 1, 2], scores, k=3) == 1.0
    assert metrics.top_k_accuracy([0, 1, 2], scores, k=10) == 1.0


def _batches(rng):
    """Label batches (some as Tensors or scores) in which classes 3 and then 5 first appear later."""
    first = (rng.integers(0, 2, 20), rng.integers(0, 3, 20))
    second = (rng.integers(0, 4, 15), rng.integers(0, 4, 15))
    second[0][0] = 3
    third_true = rng.integers(0, 6, 25)
    third_true[0] = 5
    third_scores = rng.random((25, 6))
    return [first, (ember.tensor(second[0]), ember.tensor(second[1])), (third_true, third_scores)]


def _as_labels(y_pred):
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(1) if y_pred.ndim == 2 else y_pred


@pytest.mark.parametrize("num_classes", [None, 6])
def test_streaming_equals_functional(rng, num_classes):
    batches = _batches(rng)
    y_true = np.concatenate([np.asarray(t) for t, _ in batches])
    y_pred = np.concatenate([_as_labels(p) for _, p in batches])
    streams = {metrics.Accuracy(): metrics.accuracy(y_true, y_pred)}
    for average in AVERAGES:
        expected = metrics.precision_recall_f1(y_true, y_pred, average, num_classes)
        streams[metrics.Precision(average, num_classes)] = expected[0]
        streams[metrics.Recall(average, num_classes)] = expected[1]
        streams[metrics.F1Score(average, num_classes)] = expected[2]
    for metric, expected in streams.items():
        for y_t, y_p in batches:
            metric.update(y_t, y_p)
        assert metric.result() == expected, metric.name
        metric.reset()
        with pytest.raises(ValueError, match="no samples yet"):
            metric.result()
        metric.update(*batches[0])
        assert metric.result() == _functional(metric, *batches[0]), metric.name


def _functional(metric, y_true, y_pred):
    if isinstance(metric, metrics.Accuracy):
        return metrics.accuracy(y_true, y_pred)
    scores = metrics.precision_recall_f1(y_true, y_pred, metric.average, metric.num_classes)
    return scores[metric.index]


def test_streaming_top_k(rng):
    metric = metrics.TopKAccuracy(2)
    assert metric.name == "top2_accuracy" and metrics.TopKAccuracy().name == "top5_accuracy"
    y_true, scores = rng.integers(0, 6, 50), rng.random((50, 6))
    for start in range(0, 50, 16):
        metric.update(ember.tensor(y_true[start : start + 16]), scores[start : start + 16])
    assert metric.result() == metrics.top_k_accuracy(y_true, scores, 2)
    with pytest.raises(ValueError, match="y_pred must be 2-D scores"):
        metric.update(y_true, scores.argmax(1))
    metric.reset()
    with pytest.raises(ValueError, match="no samples yet"):
        metric.result()


def test_streaming_names_and_fixed_classes():
    assert metrics.Accuracy().name == "accuracy"
    assert [m.name for m in (metrics.Precision(), metrics.Recall(), metrics.F1Score())] == [
        "precision",
        "recall",
        "f1",
    ]
    assert metrics.Precision("micro").name == "precision_micro"
    assert metrics.F1Score(average="weighted").name == "f1_weighted"
    fixed = metrics.Recall(num_classes=3)
    with pytest.raises(ValueError, match="y_true has the label 3 but num_classes is 3"):
        fixed.update([3], [0])
    with pytest.raises(ValueError, match="gives one number"):
        metrics.Precision(average=None)
    with pytest.raises(ValueError, match="average must be one of"):
        metrics.F1Score(average="binary")


def test_get():
    # Keras's rule: a metric given by name is named by that very string in the logs.
    cases = {
        "accuracy": (metrics.Accuracy, {}),
        "acc": (metrics.Accuracy, {}),
        "top5": (metrics.TopKAccuracy, {"k": 5}),
        "top_5_accuracy": (metrics.TopKAccuracy, {"k": 5}),
        "top5_accuracy": (metrics.TopKAccuracy, {"k": 5}),
        "top3": (metrics.TopKAccuracy, {"k": 3}),
        "top_10": (metrics.TopKAccuracy, {"k": 10}),
        "precision": (metrics.Precision, {"average": "macro"}),
        "recall": (metrics.Recall, {"average": "macro"}),
        "f1": (metrics.F1Score, {"average": "macro"}),
        "f1_score": (metrics.F1Score, {"average": "macro"}),
        "F1_Score_Micro": (metrics.F1Score, {"average": "micro"}),
        "precision_weighted": (metrics.Precision, {"average": "weighted"}),
        "recall_macro": (metrics.Recall, {"average": "macro"}),
        "f1_micro": (metrics.F1Score, {"average": "micro"}),
    }
    for name, (cls, settings) in cases.items():
        metric = metrics.get(name)
        assert type(metric) is cls and metric.name == name, name
        assert {k: getattr(metric, k) for k in settings} == settings, name
    assert metrics.get("top3").k == 3 and metrics.get("recall_weighted").average == "weighted"
    # The objects keep their own names.
    assert metrics.Accuracy().name == "accuracy" and metrics.TopKAccuracy(5).name == "top5_accuracy"

    instance = metrics.Precision("micro")
    assert metrics.get(instance) is instance
    assert type(metrics.get(metrics.Recall)) is metrics.Recall

    for bad in ("accuracy_micro", "f2", "top", "precision_binary", ""):
        with pytest.raises(ValueError, match=r"unknown metric .*accepted names: accuracy, acc"):
            metrics.get(bad)
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.get("top0")
    with pytest.raises(TypeError, match="a metric must be a name"):
        metrics.get(3)


def test_get_wraps_functions():
    def mean_error(y_true, y_pred):
        return float(np.mean(np.asarray(y_true) != np.asarray(y_pred)))

    metric = metrics.get(mean_error)
    assert isinstance(metric, metrics.Metric) and metric.name == "mean_error"
    metric.update([0, 1], [0, 0])  # 0.5 over 2 samples
    metric.update(ember.tensor([0, 1, 2, 3, 4, 5]), ember.tensor([0, 1, 2, 3, 4, 0]))  # 1/6 over 6
    assert metric.result() == _approx((0.5 * 2 + 1 / 6 * 6) / 8)
    metric.reset()
    with pytest.raises(ValueError, match="no samples yet"):
        metric.result()
    assert metrics.get(lambda y_true, y_pred: 1.0).name == "<lambda>"


def _parse_report(text):
    """{row name: (precision, recall, f1, support)} with None for the accuracy row's blanks."""
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        if line.split()[0] == "accuracy":
            _, f1, support = line.split()
            rows["accuracy"] = (None, None, float(f1), int(support))
        else:
            name, p, r, f1, support = line.rsplit(maxsplit=4)
            rows[name.strip()] = (float(p), float(r), float(f1), int(support))
    return rows


def test_classification_report():
    report = metrics.classification_report(HAND_TRUE, HAND_PRED, target_names=["cat", "dog", "bird"])
    assert _parse_report(report) == {
        "cat": (0.667, 1.0, 0.8, 2),
        "dog": (0.5, 0.5, 0.5, 2),
        "bird": (0.5, 0.333, 0.4, 3),
        "accuracy": (None, None, 0.571, 7),
        "macro avg": (0.556, 0.611, 0.567, 7),
        "weighted avg": (0.548, 0.571, 0.543, 7),
    }
    lines = [line for line in report.splitlines() if line.strip()]
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert "0.66667" in metrics.classification_report(HAND_TRUE, HAND_PRED, digits=5)


def test_classification_report_rows_follow_macro_classes():
    y_true, y_pred = [0, 0, 1, 0], [0, 0, 2, 2]
    inferred = _parse_report(metrics.classification_report(y_true, y_pred))
    assert [row for row in inferred if row[0].isdigit()] == ["0", "1", "2"]
    assert inferred["1"][3] == 1 and inferred["2"][3] == 0
    assert inferred["macro avg"][0] == round(metrics.precision(y_true, y_pred), 3)
    # absent classes get no row; names index classes by id
    y_true, y_pred = [0, 2, 2], [0, 2, 0]
    named = _parse_report(metrics.classification_report(y_true, y_pred, ["a", "b", "c", "d"]))
    assert [row for row in named if row in "abcd"] == ["a", "c"]
    explicit = _parse_report(
        metrics.classification_report(y_true, y_pred, ["a", "b", "c", "d"], num_classes=4)
    )
    assert [row for row in explicit if row in "abcd"] == ["a", "b", "c", "d"]
    assert explicit["b"] == explicit["d"] == (0.0, 0.0, 0.0, 0)
    assert explicit["macro avg"][2] == round(metrics.f1_score(y_true, y_pred, num_classes=4), 3)
    with pytest.raises(ValueError, match="target_names has 2 names but there are 3 classes"):
        metrics.classification_report(y_true, y_pred, ["a", "b"])
    with pytest.raises(ValueError, match="target_names has 3 names but there are 4 classes"):
        metrics.classification_report(y_true, y_pred, ["a", "b", "c"], num_classes=4)


SCORES = np.array([[0.1, 0.9], [0.8, 0.2]])

ERRORS = [
    (
        lambda: metrics.accuracy([0, 1, 2, 0, 1], [0, 1, 2, 0]),
        ValueError,
        "y_true has 5 samples but y_pred has 4",
    ),
    (lambda: metrics.f1_score([0, 1], SCORES[:1]), ValueError, "y_true has 2 samples but y_pred has 1"),
    (lambda: metrics.top_k_accuracy([0], SCORES, 1), ValueError, "y_true has 1 samples but scores has 2"),
    (lambda: metrics.accuracy([0, -1], [0, 1]), ValueError, "y_true has the negative label -1"),
    (lambda: metrics.recall([0, 1], [0, -2]), ValueError, "y_pred has the negative label -2"),
    (
        lambda: metrics.accuracy([0, 1.5], [0, 1]),
        ValueError,
        "y_true must hold integer class labels, got the value 1.5",
    ),
    (lambda: metrics.accuracy([0, np.nan], [0, 1]), ValueError, "y_true must hold integer class labels"),
    (
        lambda: metrics.accuracy([0, 1], [0.2, 0.9]),
        ValueError,
        r"y_pred must hold integer .*a 1-D float y_pred is read as labels; pass scores as a 2-D",
    ),
    (
        lambda: metrics.accuracy(["a", "b"], [0, 1]),
        TypeError,
        "y_true must hold integer class labels, got dtype",
    ),
    (
        lambda: metrics.confusion_matrix([0, 3], [0, 1], num_classes=3),
        ValueError,
        "y_true has the label 3 but num_classes is 3",
    ),
    (
        lambda: metrics.precision([0, 1], [0, 4], num_classes=3),
        ValueError,
        "y_pred has the label 4 but num_classes is 3",
    ),
    (
        lambda: metrics.accuracy([0, 2], SCORES),
        ValueError,
        "y_true has the label 2 but y_pred has 2 score columns",
    ),
    (
        lambda: metrics.top_k_accuracy([0, 2], SCORES, 1),
        ValueError,
        "y_true has the label 2 but scores has 2 score columns",
    ),
    (
        lambda: metrics.confusion_matrix([0, 1], SCORES, num_classes=3),
        ValueError,
        "y_pred has 2 score columns but num_classes is 3",
    ),
    (lambda: metrics.confusion_matrix([0, 1], [0, 1], num_classes=0), ValueError, "num_classes must be >= 1"),
    (
        lambda: metrics.accuracy([0, 1], np.zeros((2, 2, 2))),
        ValueError,
        r"y_pred must be 1-D labels or 2-D scores of shape \(N, C\), got a 3-D array",
    ),
    (
        lambda: metrics.accuracy(np.zeros((2, 2, 2), int), [0, 1]),
        ValueError,
        r"y_true must be a 1-D array of class labels, got shape \(2, 2, 2\)",
    ),
    # Scores where labels belong (the arguments swapped): rows that are not one-hot or probabilities.
    (lambda: metrics.accuracy(np.array([[2.0, -1.0], [0.5, 3.0]]), [0, 1]), ValueError,
     r"y_true must be a 1-D array of class labels or \(N, C\) one-hot / probability rows"),
    (lambda: metrics.top_k_accuracy([0, 1], np.zeros((2, 2, 2)), 1), ValueError, "scores must be 2-D"),
    (lambda: metrics.top_k_accuracy([0, 1], [0, 1], 1), ValueError, "scores must be 2-D"),
    (lambda: metrics.accuracy([], []), ValueError, "y_true is empty"),
    (lambda: metrics.accuracy([0], np.zeros((0, 3))), ValueError, "y_pred is empty"),
    (lambda: metrics.accuracy([0], np.zeros((1, 0))), ValueError, "y_pred has no score columns"),
    (lambda: metrics.classification_report([], []), ValueError, "y_true is empty"),
    (
        lambda: metrics.precision([0, 1], [0, 1], average="binary"),
        ValueError,
        r"average must be one of \('macro', 'micro', 'weighted', None\), got 'binary'",
    ),
    (lambda: metrics.f1_score([], [], average="samples"), ValueError, "average must be one of"),
    (lambda: metrics.top_k_accuracy([0, 1], SCORES, k=0), ValueError, "k must be >= 1, got 0"),
    (lambda: metrics.TopKAccuracy(k=-1), ValueError, "k must be >= 1, got -1"),
    (lambda: metrics.accuracy([0, 1], [[np.nan, 1.0], [0.0, 1.0]]), ValueError, "y_pred contains NaN"),
    (
        lambda: metrics.top_k_accuracy([0, 1], [[np.nan, 1.0], [0.0, 1.0]], 1),
        ValueError,
        "scores contains NaN",
    ),
    (
        lambda: metrics.Accuracy().update([0, 1], [[0.0, np.nan], [0.0, 1.0]]),
        ValueError,
        "y_pred contains NaN",
    ),
]


@pytest.mark.parametrize("call, error, match", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_large_sparse_class_ids(rng):
    # Product codes as labels: averages count the classes present, not every id up to the largest.
    ids = np.array([7, 10**12, 3 * 10**9, 42])
    y_true = ids[rng.integers(0, 4, 200)]
    y_pred = np.where(rng.random(200) < 0.7, y_true, ids[rng.integers(0, 4, 200)])
    codes = {v: i for i, v in enumerate(np.unique(np.concatenate([y_true, y_pred])))}
    small_true, small_pred = (np.array([codes[v] for v in y]) for y in (y_true, y_pred))
    for average in ("macro", "micro", "weighted"):
        assert metrics.precision_recall_f1(y_true, y_pred, average) == \
            metrics.precision_recall_f1(small_true, small_pred, average), average
    assert metrics.accuracy(y_true, y_pred) == metrics.accuracy(small_true, small_pred)
    # What needs a slot per id is refused by name, before any memory is asked for.
    with pytest.raises(ValueError, match=r"metrics: 1000000000001 classes .* relabel the classes 0..C-1"):
        metrics.precision_recall_f1(y_true, y_pred, None)
    with pytest.raises(ValueError, match=r"confusion_matrix: 1000000000001 classes make a"):
        metrics.confusion_matrix(y_true, y_pred)
    streaming = metrics.F1Score()
    streaming.update(small_true, small_pred)
    before = streaming.result()
    with pytest.raises(ValueError, match=r"f1: 1000000000001 classes"):
        streaming.update(y_true, y_pred)
    assert streaming.result() == before  # nothing half-added


def test_streaming_state_merges_counts(rng):
    y_true, y_pred = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    first, second = metrics.Precision(), metrics.Precision()
    first.update(y_true[:100], y_pred[:100] % 3)  # fewer classes seen: the merge grows the counts
    second.update(y_true[100:], y_pred[100:])
    first.merge_state(second.state())
    expected = metrics.precision(y_true, np.concatenate([y_pred[:100] % 3, y_pred[100:]]))
    assert first.result() == pytest.approx(expected, abs=1e-15)
    with pytest.raises(ValueError, match=r"precision: merge_state needs the \(3, C\) counts"):
        first.merge_state({"counts": np.zeros((4, 4), np.int64)})
