"""Datasets: TensorDataset, the Dataset base class's batch stacking, Subset and random_split."""

import numpy as np
import pytest

import ember
from ember.data import Dataset, Subset, TensorDataset, TextWindows, random_split


class Squares(Dataset):
    """A dataset without its own get_batch: samples are (array, int)."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full((2, 3), i, np.float32), i * i

    def __len__(self):
        return self.n


def test_tensor_dataset_items_and_batches(rng):
    x = rng.standard_normal((7, 3, 2)).astype(np.float32)
    y = rng.integers(0, 5, 7)
    ds = TensorDataset(x, y)
    assert len(ds) == 7
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi, x[4])
    assert yi == y[4]
    idx = np.array([6, 0, 3, 3])
    xb, yb = ds.get_batch(idx)
    np.testing.assert_array_equal(xb, x[idx])
    np.testing.assert_array_equal(yb, y[idx])
    assert "float32[7, 3, 2]" in repr(ds)


def test_tensor_dataset_takes_tensors_without_copying(rng):
    x = rng.standard_normal((5, 2)).astype(np.float32)
    t = ember.from_numpy(x)
    w = ember.tensor(x, requires_grad=True)
    ds = TensorDataset(t, w)
    assert np.shares_memory(ds.arrays[0], x)
    np.testing.assert_array_equal(ds.get_batch(np.array([1, 2]))[1], x[[1, 2]])


@pytest.mark.parametrize("arrays, error, match", [
    ((), ValueError, "at least one array"),
    ((np.zeros(3), np.zeros(4), np.zeros(3)), ValueError, r"same length.*\[3, 4, 3\]"),
    ((np.zeros(3), [1, 2, 3]), TypeError, "array 1 must be a NumPy array or an ember Tensor, got list"),
    ((np.float32(1.0),), TypeError, "array 0"),
    ((np.zeros(()),), ValueError, "array 0 is 0-d"),
])
def test_tensor_dataset_errors(arrays, error, match):
    with pytest.raises(error, match=match):
        TensorDataset(*arrays)


def test_base_get_batch_stacks_samples():
    xb, yb = Squares(6).get_batch(np.array([5, 1, 2]))
    assert xb.shape == (3, 2, 3) and xb.dtype == np.float32
    np.testing.assert_array_equal(xb[:, 0, 0], [5, 1, 2])
    np.testing.assert_array_equal(yb, [25, 1, 4])


def test_base_get_batch_errors():
    class Ragged(Dataset):
        def __getitem__(self, i):
            return (i,) if i else (i, i)

        def __len__(self):
            return 2

    with pytest.raises(ValueError, match="sample 1 has 1 fields, sample 0 has 2"):
        Ragged().get_batch(np.array([0, 1]))
    with pytest.raises(ValueError, match="at least one index"):
        Squares(3).get_batch(np.array([], np.int64))
    with pytest.raises(NotImplementedError, match="Dataset must implement __len__"):
        len(Dataset())
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]


def test_a_list_sample_is_its_fields_as_torch_collates_it():
    samples = [[np.full(3, i, np.float32), np.ones(2) * i, i] for i in range(4)]
    xb, yb, ib = ember.data.dataset.fetch_batch(samples, np.array([2, 0]))
    assert xb.shape == (2, 3) and yb.shape == (2, 2) and ib.shape == (2,)
    np.testing.assert_array_equal(ib, [2, 0])
    single, = ember.data.dataset.fetch_batch([np.zeros(3)] * 2, np.array([0, 1]))  # not a list: one field
    assert single.shape == (2, 3)


@pytest.mark.parametrize("samples, error, match", [
    ([[np.zeros(3), 1], [np.zeros(2), 1]], ValueError,
     r"list: field 0 of sample 1 has shape \(2,\), that of sample 0 \(3,\); a field has one shape"),
    ([[np.zeros(3), 1], [np.zeros(3), None]], TypeError, r"field 1 of sample 1 is NoneType None, not an array"),
    ([([1, 2], 0), ([1, [2]], 0)], TypeError, "field 0 of sample 1 is list"),  # ragged nested lists
    ([(np.zeros(3), "cat"), (np.zeros(3), 2)], TypeError,
     r"field 1 of sample 1 holds int64 values, that of sample 0 <U3; a field holds numbers in every sample or in none"),
    ([{"image": np.zeros(3), "label": 1}] * 2, TypeError,
     r"sample 0 is a dict; Ember's batches are tuples of fields .* such as \(sample\['image'\], sample\['label'\]\)"),
])
def test_samples_that_do_not_stack_are_named(samples, error, match):
    with pytest.raises(error, match=match):
        ember.data.dataset.fetch_batch(samples, np.array([0, 1]))


def test_get_batch_must_return_a_tuple():
    class Flat(Dataset):
        def __len__(self):
            return 4

        def get_batch(self, indices):
            return np.zeros(len(indices))

    with pytest.raises(TypeError, match="Flat.get_batch must return a tuple of arrays"):
        Subset(Flat(), [1, 2]).get_batch(np.array([0]))


def test_subset_maps_indices():
    x = np.arange(10) * 10
    base = TensorDataset(x)
    sub = Subset(base, [7, 2, 9])
    assert len(sub) == 3
    assert sub[1] == (20,)
    assert sub[-1] == (90,)
    np.testing.assert_array_equal(sub.get_batch(np.array([2, 0]))[0], [90, 70])
    # a parent without get_batch is stacked sample by sample
    nested = Subset(Subset(Squares(10), np.array([3, 4, 5])), [2, 0])
    np.testing.assert_array_equal(nested.get_batch(np.array([0, 1]))[1], [25, 9])


@pytest.mark.parametrize("indices, error, match", [
    ([0, 10], IndexError, r"0\.\.9 .*got 10"),
    ([-1], IndexError, "got -1"),
    ([[0, 1]], ValueError, "1-D"),
    ([0.5], TypeError, "integers"),
])
def test_subset_errors(indices, error, match):
    with pytest.raises(error, match=match):
        Subset(TensorDataset(np.zeros(10)), indices)


def test_random_split_integer_lengths():
    ds = TensorDataset(np.arange(20))
    parts = random_split(ds, [5, 0, 15], seed=3)
    assert [len(p) for p in parts] == [5, 0, 15]
    together = np.concatenate([p.indices for p in parts])
    np.testing.assert_array_equal(np.sort(together), np.arange(20))
    again = random_split(ds, [5, 0, 15], seed=3)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a.indices, b.indices)
    other = random_split(ds, [5, 0, 15], seed=4)
    assert not np.array_equal(parts[2].indices, other[2].indices)


def test_random_split_fractions_follow_pytorch():
    ds = TensorDataset(np.arange(10))
    assert [len(p) for p in random_split(ds, [0.33, 0.33, 0.34], seed=0)] == [4, 3, 3]
    assert [len(p) for p in random_split(ds, [0.25, 0.75], seed=0)] == [3, 7]
    assert [len(p) for p in random_split(ds, np.array([0.5, 0.5]), seed=0)] == [5, 5]


def test_random_split_default_seed_follows_manual_seed():
    ds = TensorDataset(np.arange(50))
    ember.manual_seed(11)
    a = random_split(ds, [25, 25])
    ember.manual_seed(11)
    b = random_split(ds, [25, 25])
    np.testing.assert_array_equal(a[0].indices, b[0].indices)


@pytest.mark.parametrize("lengths, seed, error, match", [
    ([3, 3], 0, ValueError, r"sum to 6, but the dataset has 10"),
    ([12, -2], 0, ValueError, ">= 0"),
    ([0.5, 0.4], 0, ValueError, "fractions must sum to 1"),
    ([], 0, ValueError, "empty"),
    ([True, 9], 0, TypeError, "integers or fractions"),
    (["5", 5], 0, TypeError, "integers or fractions"),
    ([5, 5], -1, ValueError, "random_split: seed must be an integer >= 0, got -1"),
    ([5, 5], 1.5, TypeError, "seed must be an integer"),
])
def test_random_split_errors(lengths, seed, error, match):
    with pytest.raises(error, match=match):
        random_split(TensorDataset(np.zeros(10)), lengths, seed=seed)


def test_text_windows_next_tokens_and_strides():
    ids = np.arange(20, dtype=np.int64) * 3
    every, tiled = TextWindows(ids, 5), TextWindows(ids, 5, stride=5)
    assert len(every) == 15 and len(tiled) == 3  # tiled: starts 0, 5, 10 (15 lacks a next token for its last)
    x, y = every[4]
    np.testing.assert_array_equal(x, ids[4:9])
    np.testing.assert_array_equal(y, ids[5:10])
    np.testing.assert_array_equal(every[-1][1], ids[15:20])
    bx, by = tiled.get_batch(np.array([2, 0]))
    np.testing.assert_array_equal(bx, np.stack([ids[10:15], ids[0:5]]))
    np.testing.assert_array_equal(by, np.stack([ids[11:16], ids[1:6]]))
    loader = ember.data.DataLoader(every, batch_size=4, shuffle=True, seed=0)
    for bx, by in loader:
        np.testing.assert_array_equal(by[:, :-1], bx[:, 1:])


@pytest.mark.parametrize("args, error, match", [
    ((np.arange(5.0), 2), TypeError, "1-D integer NumPy array"),
    ((np.arange(6).reshape(2, 3), 2), TypeError, "1-D integer NumPy array"),
    ((np.arange(5), 0), ValueError, "length and stride must be >= 1"),
    ((np.arange(5), 2, 0), ValueError, "length and stride must be >= 1"),
    ((np.arange(5), 5), ValueError, "needs at least 6 tokens, got 5"),
])
def test_text_windows_errors(args, error, match):
    with pytest.raises(error, match=match):
        TextWindows(*args)
    windows = TextWindows(np.arange(10), 3)
    with pytest.raises(IndexError, match="out of range for 7 windows"):
        windows[7]
    with pytest.raises(IndexError, match="must lie in 0..6"):
        windows.get_batch(np.array([7]))
