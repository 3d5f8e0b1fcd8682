"""Keras's ``datasets``: ``cifar10``, ``mnist`` and ``fashion_mnist``, each with ``load_data()``
returning Keras's shapes and dtypes. Nothing is downloaded: the files are read from a folder
under ``$EMBER_DATA`` (default ``~/.ember/datasets``), and a missing one says where to put it."""

from . import cifar10, fashion_mnist, mnist

__all__ = ["cifar10", "fashion_mnist", "mnist"]
