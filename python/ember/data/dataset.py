"""Map-style datasets: indexable collections of samples that can also fetch whole batches.

A sample is a tuple (or a list) of fields, e.g. ``(image, label)``, or a single field. Besides
``__getitem__`` and ``__len__``, a dataset may provide ``get_batch(indices)`` returning one NumPy
array per field with the batch on axis 0; ``DataLoader`` uses it so that a batch costs one
fancy-index per field instead of a Python loop over samples.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Mapping

import numpy as np

from ..tensor import Tensor
from ..factories import default_generator


def nonnegative_int(value, name: str) -> int:
    """``value`` as a Python int, or an error naming ``name`` if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return int(value)


def resolve_seed(seed, name: str) -> int:
    """``seed`` checked, or, when it is None, a fresh one drawn from ember's default generator
    (so ``ember.manual_seed`` makes the draw reproducible)."""
    if seed is None:
        return int(default_generator().numpy.integers(2**63))
    return nonnegative_int(seed, name)


def fetch_batch(dataset, indices: np.ndarray) -> tuple:
    """The samples ``dataset[i]`` for ``i`` in ``indices``, as a tuple with one NumPy array per
    field (batch on axis 0). Uses ``dataset.get_batch`` when there is one; otherwise stacks
    ``__getitem__`` results, so any object with ``__getitem__``/``__len__`` works."""
    get_batch = getattr(dataset, "get_batch", None)
    fields = get_batch(indices) if get_batch is not None else _stack_samples(dataset, indices)
    if not isinstance(fields, (tuple, list)):
        raise TypeError(f"{type(dataset).__name__}.get_batch must return a tuple of arrays (one per field), "
                        f"got {type(fields).__name__}")
    return tuple(fields)


def _stack_samples(dataset, indices: np.ndarray) -> tuple:
    if len(indices) == 0:
        raise ValueError("get_batch needs at least one index (field shapes come from the samples)")
    name = type(dataset).__name__
    samples = [_sample_fields(dataset[int(i)], name, int(i)) for i in indices]
    width = len(samples[0])
    for i, s in zip(indices, samples):
        if len(s) != width:
            raise ValueError(f"{name}: sample {int(i)} has {len(s)} fields, sample {int(indices[0])} has {width}")
    return tuple(_stack_field([s[f] for s in samples], indices, f, name) for f in range(width))


def _sample_fields(sample, name: str, index: int) -> tuple:
    """A sample's fields, as ``torch.utils.data.default_collate`` reads them: a tuple or a list is
    its items (``[x, y]`` as ``(x, y)``), anything else one field."""
    if isinstance(sample, Mapping):
        raise TypeError(f"{name}: sample {index} is a {type(sample).__name__}; Ember's batches are tuples of "
                        "fields (the inputs first, as fit reads them), so return a tuple or a list of its values, "
                        f"such as ({', '.join(f'sample[{k!r}]' for k in list(sample)[:2])})")
    return tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)


_NUMBERS = "biufc"  # the dtype kinds of numbers (booleans included)


def _stack_field(values, indices, field: int, name: str) -> np.ndarray:
    """Field ``field`` of the samples at ``indices`` stacked on a new axis 0: each an array, a
    Tensor, a number or nested lists of numbers, all of one shape."""
    arrays = []
    for i, v in zip(indices, values):
        try:
            a = _as_array(v)
        except ValueError:  # nested lists of different lengths
            a = None
        if a is None or a.dtype == object:
            raise TypeError(f"{name}: field {field} of sample {int(i)} is {type(v).__name__} {repr(v)[:40]}, not an "
                            "array, a Tensor, a number or nested lists of numbers of one shape")
        if arrays and a.shape != arrays[0].shape:
            raise ValueError(f"{name}: field {field} of sample {int(i)} has shape {a.shape}, that of sample "
                             f"{int(indices[0])} {arrays[0].shape}; a field has one shape in every sample")
        if arrays and (a.dtype.kind in _NUMBERS) != (arrays[0].dtype.kind in _NUMBERS):
            raise TypeError(f"{name}: field {field} of sample {int(i)} holds {a.dtype} values, that of sample "
                            f"{int(indices[0])} {arrays[0].dtype}; a field holds numbers in every sample or in none")
        arrays.append(a)
    return np.stack(arrays)


def _as_array(value) -> np.ndarray:
    return value.detach()._host() if isinstance(value, Tensor) else np.asarray(value)


def _as_indices(indices, size: int, name: str) -> np.ndarray:
    """``indices`` as a 1-D int64 array, each in ``0 .. size - 1``."""
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of integers, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= size)
    if bad.any():
        raise IndexError(f"{name} must lie in 0..{size - 1} (the dataset has {size} samples), "
                         f"got {arr[bad][0]}")
    return arr.astype(np.int64)


class Dataset:
    """Base class of map-style datasets.

    Subclasses implement ``__getitem__(index)`` (a sample: a tuple or a list of fields, or a
    single value) and ``__len__``. They may override ``get_batch`` with a vectorised version.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def get_batch(self, indices: np.ndarray) -> tuple:
        """The samples at ``indices`` as a tuple of arrays, one per field, batch on axis 0.

        This default stacks ``self[i]`` for each index; subclasses that can gather a batch in
        one operation should override it.
        """
        return _stack_samples(self, np.asarray(indices))


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays: ``ds[i] == (a[i], b[i], ...)``.

    ``arrays`` are NumPy arrays or ember Tensors (their storage is used, not copied), all with
    the same length along axis 0. ``get_batch`` is one fancy-index per array.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        converted = []
        for i, a in enumerate(arrays):
            if isinstance(a, Tensor):
                a = a.detach()._host()
            elif not isinstance(a, np.ndarray):
                raise TypeError(f"TensorDataset: array {i} must be a NumPy array or an ember Tensor, "
                                f"got {type(a).__name__}")
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {i} is 0-d; each array needs a batch axis")
            converted.append(a)
        lengths = [len(a) for a in converted]
        if len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset: all arrays must have the same length (axis 0), got lengths {lengths}")
        self.arrays = tuple(converted)

    def __getitem__(self, index) -> tuple:
        return tuple(a[index] for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def get_batch(self, indices: np.ndarray) -> tuple:
        """One fancy-index per array: ``tuple(a[indices] for a in arrays)`` (copies)."""
        return tuple(a[indices] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"


class TextWindows(Dataset):
    """Windows of a token sequence for next-token prediction: sample ``i`` is
    ``(ids[s:s + length], ids[s + 1:s + length + 1])`` with ``s = i * stride``. ``stride=1``
    (the default) offers every window -- shuffled and cut to ``steps_per_epoch`` batches, each
    epoch trains on new random places of the text; ``stride=length`` tiles it without overlap,
    as a validation set wants. ``ids`` is a 1-D integer array (kept, not copied)."""

    def __init__(self, ids, length: int, stride: int = 1):
        ids = ids.detach()._host() if isinstance(ids, Tensor) else ids
        if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise TypeError(f"TextWindows: ids must be a 1-D integer NumPy array, got "
                            f"{getattr(ids, 'dtype', type(ids).__name__)} of shape {getattr(ids, 'shape', None)}")
        length = nonnegative_int(length, "TextWindows: length")
        stride = nonnegative_int(stride, "TextWindows: stride")
        if length < 1 or stride < 1:
            raise ValueError(f"TextWindows: length and stride must be >= 1, got {length} and {stride}")
        if len(ids) < length + 1:
            raise ValueError(f"TextWindows: a window of {length} tokens and its next ones needs at least {length + 1} "
                             f"tokens, got {len(ids)}")
        self.ids, self.length, self.stride = ids, length, stride
        self._count = (len(ids) - length - 1) // stride + 1

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index) -> tuple:
        i = operator.index(index)
        if not -self._count <= i < self._count:
            raise IndexError(f"TextWindows: index {i} is out of range for {self._count} windows")
        s = (i % self._count) * self.stride
        return self.ids[s:s + self.length], self.ids[s + 1:s + self.length + 1]

    def get_batch(self, indices: np.ndarray) -> tuple:
        """One gather of (batch, length + 1) tokens, split into inputs and next tokens."""
        starts = _as_indices(indices, self._count, "TextWindows: indices") * self.stride
        w = self.ids[starts[:, None] + np.arange(self.length + 1)]
        return w[:, :-1], w[:, 1:]

    def __repr__(self) -> str:
        return f"TextWindows({len(self.ids)} tokens, length={self.length}, stride={self.stride}: {self._count} windows)"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order: ``sub[i] == dataset[indices[i]]``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = _as_indices(indices, len(dataset), "Subset: indices")

    def __getitem__(self, index):
        return self.dataset[int(self.indices[operator.index(index)])]

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> tuple:
        """The parent's batch at the mapped indices (its own ``get_batch`` when it has one)."""
        return fetch_batch(self.dataset, self.indices[np.asarray(indices)])

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {type(self.dataset).__name__} with {len(self.dataset)})"


def random_split(dataset, lengths, seed=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random ``Subset``s.

    ``lengths`` are either integers summing to ``len(dataset)``, or fractions summing to 1
    (PyTorch's rule: each part gets ``floor(fraction * len)`` samples and the remainder is dealt
    one by one to the parts in order). The samples are assigned by a permutation drawn from
    ``np.random.default_rng(seed)``; ``seed=None`` draws the seed from ember's default
    generator, so ``ember.manual_seed`` makes the split reproducible.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if any(isinstance(x, bool) or not isinstance(x, numbers.Real) for x in lengths):
        raise TypeError(f"random_split: lengths must be integers or fractions, got {lengths}")
    if any(x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be >= 0, got {lengths}")
    if all(isinstance(x, numbers.Integral) for x in lengths):
        counts = [int(x) for x in lengths]
        if sum(counts) != n:
            raise ValueError(f"random_split: lengths {counts} sum to {sum(counts)}, but the dataset has {n} samples")
    elif np.isclose(sum(lengths), 1.0) and all(x <= 1 for x in lengths):
        counts = [int(np.floor(float(f) * n)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        raise ValueError(f"random_split: fractions must sum to 1 (or give integer lengths summing to {n}), "
                         f"got {lengths} summing to {sum(lengths)}")
    order = np.random.default_rng(resolve_seed(seed, "random_split: seed")).permutation(n)
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
