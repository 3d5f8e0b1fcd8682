"""MNIST as ``keras.datasets.mnist``."""

from __future__ import annotations

from ... import datasets
from ._home import data_home, missing


def load(kind: str, folder_name: str, name: str, url: str):
    folder = data_home() / folder_name
    try:
        (x_train, y_train), (x_test, y_test) = datasets.mnist(folder, kind=kind)
    except FileNotFoundError as e:
        raise missing(name, folder, "the four IDX files (train-images-idx3-ubyte ...; .gz or not)",
                      "train-images-idx3-ubyte.gz and its three companions", url, e) from None
    return (x_train[:, 0], y_train.astype("uint8")), (x_test[:, 0], y_test.astype("uint8"))


def load_data():
    """``((x_train, y_train), (x_test, y_test))``: images uint8 (N, 28, 28), labels uint8 (N,),
    read from the IDX files in ``$EMBER_DATA/mnist`` (default ``~/.ember/datasets``)."""
    return load("mnist", "mnist", "MNIST", "https://yann.lecun.com/exdb/mnist/")
