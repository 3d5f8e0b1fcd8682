"""Datasets, batching and batch augmentation.

``Dataset``/``TensorDataset``/``TextWindows``/``Subset``/``random_split`` describe the samples, ``DataLoader``
batches them (shuffled, augmented and prefetched reproducibly from one seed), and
``ember.data.transforms`` holds vectorised batch augmentations::

    from ember.data import DataLoader, TensorDataset, transforms as T

    train = DataLoader(TensorDataset(x_train, y_train), batch_size=128, shuffle=True, seed=0,
                       transform=T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                            T.ToFloat(), T.Normalize(mean, std)]))
    for epoch in range(epochs):
        for x, y in train:
            ...
"""

from . import transforms
from .dataset import Dataset, Subset, TensorDataset, TextWindows, random_split
from .loader import DataLoader, default_collate

__all__ = ["DataLoader", "Dataset", "Subset", "TensorDataset", "TextWindows", "default_collate", "random_split", "transforms"]
