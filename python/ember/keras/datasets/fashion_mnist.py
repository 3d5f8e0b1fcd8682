"""Fashion-MNIST as ``keras.datasets.fashion_mnist``."""

from __future__ import annotations

from .mnist import load


def load_data():
    """``((x_train, y_train), (x_test, y_test))``: images uint8 (N, 28, 28), labels uint8 (N,),
    read from the IDX files in ``$EMBER_DATA/fashion_mnist`` (default ``~/.ember/datasets``)."""
    return load("fashion", "fashion_mnist")
