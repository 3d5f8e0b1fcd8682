"""Keras's API on Ember: a classic Keras program runs with only its imports changed::

    from ember.keras import Sequential, layers, utils
    from ember.keras.datasets import cifar10

``Sequential`` takes channels-last images and Keras's ``compile`` / ``fit`` / ``evaluate`` /
``predict`` / ``summary``; ``layers`` infer their input sizes at the first call;
``optimizers`` are Keras's objects, with Keras's updates; ``losses`` hold Keras's
``CategoricalCrossentropy`` and ``SparseCategoricalCrossentropy`` objects and its per-sample
``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` functions (give
``compile`` a name or an object); ``utils.to_categorical`` one-hots
labels; ``models.load_model`` rebuilds a saved model; ``datasets`` read CIFAR-10 and (Fashion-)MNIST from local files into Keras's shapes.
Everything computes on Ember's kernels, in Ember's NCHW layout.
"""

from .. import losses
from . import datasets, layers, models, optimizers, utils
from .models import Sequential

__all__ = ["Sequential", "datasets", "layers", "losses", "models", "optimizers", "utils"]
