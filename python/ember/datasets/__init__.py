"""Ready-made datasets, all offline: the bundled digits set and Shakespeare text, readers for
CIFAR-10 and (Fashion-)MNIST files you have downloaded, and a synthetic set.

The loaders return NumPy arrays, Keras-style: ``((x_train, y_train), (x_test, y_test))`` with
images uint8 ``(N, C, H, W)`` and labels int64 (``synthetic`` returns one ``(x, y)``). Wrap
them in ``ember.data.TensorDataset`` and feed a ``DataLoader``; convert pixels with
``ember.data.transforms.ToFloat``::

    from ember import datasets
    from ember.data import DataLoader, TensorDataset, transforms as T

    (x_train, y_train), (x_test, y_test) = datasets.digits()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                        transform=T.ToFloat(1 / 16))
"""

from ._cifar import cifar10
from ._digits import digits
from ._mnist import fashion_mnist, mnist
from ._synthetic import synthetic
from ._text import shakespeare

__all__ = ["cifar10", "digits", "fashion_mnist", "mnist", "shakespeare", "synthetic"]
