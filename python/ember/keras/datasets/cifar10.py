"""CIFAR-10 as ``keras.datasets.cifar10``."""

from __future__ import annotations

import numpy as np

from ... import datasets
from ._home import data_home, read


def load_data():
    """``((x_train, y_train), (x_test, y_test))``: images uint8 (N, 32, 32, 3), channels last,
    labels uint8 (N, 1), read from ``$EMBER_DATA/cifar-10-batches-py`` (default
    ``~/.ember/datasets``; the "python version" batches of ``cifar-10-python.tar.gz``)."""
    (x_train, y_train), (x_test, y_test) = read(datasets.cifar10, data_home())

    def keras(x, y):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y.astype(np.uint8).reshape(-1, 1)

    return keras(x_train, y_train), keras(x_test, y_test)
