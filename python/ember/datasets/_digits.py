"""The UCI handwritten digits set, shipped with ember."""

from __future__ import annotations

import numbers
from importlib import resources

import numpy as np


def digits(test_fraction=0.2, seed=0):
    """The UCI "Optical Recognition of Handwritten Digits" test set: 1 797 images of 8x8 pixels.

    Returns ``((x_train, y_train), (x_test, y_test))`` with ``x`` uint8 of shape ``(N, 1, 8, 8)``
    holding values 0..16 (scale with ``ember.data.transforms.ToFloat(1 / 16)``) and ``y`` int64
    labels 0..9.

    The split is stratified: for each digit, ``round(count * test_fraction)`` of its images
    (at least one, and leaving at least one for training), chosen by a permutation seeded with
    ``seed``, go to the test set. Each split is then shuffled with the same generator, so the
    result is deterministic for a given ``(test_fraction, seed)``.

    Source: E. Alpaydin and C. Kaynak, UCI Machine Learning Repository (1998),
    https://doi.org/10.24432/C50P49, CC BY 4.0.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise ValueError(f"digits: test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"digits: seed must be an integer >= 0, got {seed!r}")
    with resources.files(__package__).joinpath("data", "digits.npz").open("rb") as f, \
            np.load(f, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    x = images.reshape(-1, 1, 8, 8).astype(np.uint8, copy=False)
    y = labels.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(y == digit))
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    return (x[train], y[train]), (x[test], y[test])
