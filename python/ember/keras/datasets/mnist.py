"""MNIST as ``keras.datasets.mnist``."""

from __future__ import annotations

from ... import datasets
from ._home import data_home, read


def load(kind: str, folder_name: str):
    (x_train, y_train), (x_test, y_test) = read(lambda root: datasets.mnist(root, kind=kind), data_home() / folder_name)
    return (x_train[:, 0], y_train.astype("uint8")), (x_test[:, 0], y_test.astype("uint8"))


def load_data():
    """``((x_train, y_train), (x_test, y_test))``: images uint8 (N, 28, 28), labels uint8 (N,),
    read from the IDX files in ``$EMBER_DATA/mnist`` (default ``~/.ember/datasets``)."""
    return load("mnist", "mnist")
