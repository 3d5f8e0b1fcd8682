"""DataLoader: batching, shuffling, reproducibility from (seed, epoch), augmentation, background
prefetching (errors, early exits, no leaked threads) and argument checks."""

import gc
import threading
import time

import numpy as np
import pytest

import ember
from ember.data import DataLoader, Dataset, TensorDataset, transforms as T

THREAD_NAME = "ember-DataLoader-prefetch"


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = set(prefetch_threads())
    yield
    gc.collect()
    assert set(prefetch_threads()) <= before


def indexed(n, shape=(1, 4, 4)):
    """x[i] is filled with i (so a batch's samples can be identified), y[i] = i."""
    x = np.broadcast_to(np.arange(n, dtype=np.uint8).reshape(-1, *(1,) * len(shape)), (n, *shape)).copy()
    return TensorDataset(x, np.arange(n, dtype=np.int64))


def as_arrays(batches):
    return [tuple(f.numpy().copy() for f in b) for b in batches]


def assert_same(a, b):
    assert len(a) == len(b)
    for ba, bb in zip(a, b):
        assert len(ba) == len(bb)
        for fa, fb in zip(ba, bb):
            np.testing.assert_array_equal(fa, fb)


AUGMENT = T.Compose([T.RandomCrop(4, padding=2), T.RandomHorizontalFlip()])


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("n, bs, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
    (0, 4, False, []),
])
def test_batch_count_and_shapes(prefetch, n, bs, drop_last, sizes):
    loader = DataLoader(indexed(n), batch_size=bs, drop_last=drop_last, prefetch=prefetch)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(y) for _, y in batches] == sizes
    for x, y in batches:
        assert isinstance(x, ember.Tensor) and isinstance(y, ember.Tensor)
        assert x.shape == (len(y), 1, 4, 4) and x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy())
    if not drop_last and n:
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), np.arange(n))


@pytest.mark.parametrize("prefetch", [True, False])
def test_shuffle_visits_every_index_once_per_epoch(prefetch):
    loader = DataLoader(indexed(23), batch_size=4, shuffle=True, seed=5, prefetch=prefetch)
    orders = []
    for _ in range(3):
        order = np.concatenate([y.numpy() for _, y in loader])
        np.testing.assert_array_equal(np.sort(order), np.arange(23))
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert loader.epoch == 3


def test_same_seed_same_batches_and_prefetch_does_not_matter():
    def run(prefetch):
        loader = DataLoader(indexed(20), batch_size=6, shuffle=True, seed=42, transform=AUGMENT, prefetch=prefetch)
        return [as_arrays(loader) for _ in range(2)]

    a, b, c = run(True), run(True), run(False)
    for e in range(2):
        assert_same(a[e], b[e])
        assert_same(a[e], c[e])
    assert not np.array_equal(a[0][0][0], a[1][0][0])  # epochs differ (order and augmentation)


def test_set_epoch_replays_an_epoch():
    loader = DataLoader(indexed(20), batch_size=6, shuffle=True, seed=7, transform=AUGMENT)
    epochs = [as_arrays(loader) for _ in range(3)]
    assert loader.epoch == 3
    loader.set_epoch(1)
    assert loader.epoch == 1
    assert_same(as_arrays(loader), epochs[1])
    assert loader.epoch == 2
    fresh = DataLoader(indexed(20), batch_size=6, shuffle=True, seed=7, transform=AUGMENT, prefetch=False)
    fresh.set_epoch(2)
    assert_same(as_arrays(fresh), epochs[2])


def test_epoch_advances_only_when_all_batches_are_handed_out():
    loader = DataLoader(indexed(10), batch_size=3, shuffle=True, seed=1)
    first = as_arrays(loader)
    for _ in loader:
        break
    assert loader.epoch == 1
    it = iter(loader)
    batches = [next(it) for _ in range(len(loader))]  # no StopIteration needed
    assert loader.epoch == 2
    assert not np.array_equal(batches[0][1].numpy(), first[0][1])
    assert_same(as_arrays(DataLoader(indexed(0), batch_size=3)), [])


def test_default_seed_comes_from_ember_manual_seed():
    ember.manual_seed(123)
    a = DataLoader(indexed(10), batch_size=4, shuffle=True)
    ember.manual_seed(123)
    b = DataLoader(indexed(10), batch_size=4, shuffle=True)
    c = DataLoader(indexed(10), batch_size=4, shuffle=True)
    assert a.seed == b.seed != c.seed
    assert_same(as_arrays(a), as_arrays(b))


@pytest.mark.parametrize("prefetch", [True, False])
def test_transform_gets_the_inputs_and_a_per_batch_generator(prefetch):
    seen = []

    def transform(x, rng):
        assert isinstance(x, np.ndarray) and x.shape[1:] == (1, 4, 4)
        assert isinstance(rng, np.random.Generator)
        draw = rng.integers(2**62)
        seen.append(draw)
        return x.astype(np.float32) + 0.5

    loader = DataLoader(indexed(10), batch_size=4, transform=transform, seed=9, prefetch=prefetch)
    x, y = next(iter(loader))
    assert x.dtype == np.float32 and y.dtype == np.int64  # only the first field is transformed
    np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy() + 0.5)
    seen.clear()
    loader.set_epoch(0)
    list(loader)
    epoch0 = list(seen)
    assert len(set(epoch0)) == 3  # one distinct generator per batch
    seen.clear()
    list(loader)
    assert not set(seen) & set(epoch0)  # and per epoch
    seen.clear()
    loader.set_epoch(0)
    list(loader)
    assert seen == epoch0


def test_collate_fn_gets_numpy_fields():
    def collate(fields):
        assert isinstance(fields, tuple) and all(isinstance(f, np.ndarray) for f in fields)
        x, y = fields
        return {"x": x.sum(axis=(1, 2, 3)), "y": y}

    batches = list(DataLoader(indexed(5), batch_size=2, collate_fn=collate))
    assert [b["y"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(batches[1]["x"], [32, 48])


def test_any_indexable_dataset_works():
    samples = [(np.full(3, i, np.float32), i % 2) for i in range(5)]
    (x, y), *_ = DataLoader(samples, batch_size=4)
    assert x.shape == (4, 3)
    np.testing.assert_array_equal(y.numpy(), [0, 1, 0, 1])


def test_list_samples_are_batched_field_by_field_and_fit_trains_on_them():
    batches = list(DataLoader([[np.zeros(3), np.ones(3)] for _ in range(4)], batch_size=2))
    assert len(batches) == 2 and all(len(b) == 2 and b[0].shape == b[1].shape == (2, 3) for b in batches)
    model = ember.nn.Sequential(ember.nn.Linear(3, 2))
    model.compile(optimizer="adam", loss="cross_entropy")
    samples = [[np.full(3, i, np.float32), i % 2] for i in range(8)]
    history = model.fit(DataLoader(samples, batch_size=4), epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1


def test_dict_samples_are_refused_with_what_to_return_instead():
    loader = DataLoader([{"x": np.zeros(3, np.float32), "y": 1}] * 4, batch_size=2)
    with pytest.raises(TypeError, match=r"sample 0 is a dict; Ember's batches are tuples of fields"):
        next(iter(loader))


class Failing(Dataset):
    """Fetching any batch that holds index `bad` raises; records fetches and their threads."""

    def __init__(self, n, bad=None):
        self.n, self.bad = n, bad
        self.fetched, self.threads = [], set()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.get_batch(np.array([i]))

    def get_batch(self, indices):
        self.threads.add(threading.get_ident())
        self.fetched.append(indices.tolist())
        if self.bad in indices:
            raise KeyError(f"broken sample {self.bad}")
        return (indices.astype(np.float32),)


@pytest.mark.parametrize("prefetch", [True, False])
def test_errors_surface_at_the_batch_that_failed(prefetch):
    loader = DataLoader(Failing(10, bad=5), batch_size=2, prefetch=prefetch)
    got = []
    with pytest.raises(KeyError, match="broken sample 5"):
        for (x,) in loader:
            got.append(x.numpy().tolist())
    assert got == [[0, 1], [2, 3]]
    assert loader.epoch == 0
    assert not prefetch_threads()


def test_iterator_is_finished_after_an_error():
    it = iter(DataLoader(Failing(4, bad=0), batch_size=2))
    with pytest.raises(KeyError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_runs_in_the_background_and_only_a_little_ahead():
    ds = Failing(40)
    it = iter(DataLoader(ds, batch_size=2))
    next(it)
    deadline = time.monotonic() + 10
    while len(ds.fetched) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert 3 <= len(ds.fetched) <= 4  # one handed out, two queued, at most one waiting to be queued
    assert ds.threads and threading.get_ident() not in ds.threads
    it.close()
    assert not prefetch_threads()
    with pytest.raises(StopIteration):
        next(it)
    ds = Failing(4)
    list(DataLoader(ds, batch_size=2, prefetch=False))
    assert ds.threads == {threading.get_ident()}


def test_breaking_out_early_stops_the_worker():
    loader = DataLoader(indexed(100), batch_size=2, transform=AUGMENT)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert not prefetch_threads()
    it = iter(loader)
    next(it)
    (thread,) = prefetch_threads()
    del it
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert loader.epoch == 0


def test_finished_iteration_joins_the_worker():
    it = iter(DataLoader(indexed(6), batch_size=2))
    (thread,) = prefetch_threads()
    assert len(list(it)) == 3
    assert not thread.is_alive()


def test_repr_and_properties():
    loader = DataLoader(indexed(10), batch_size=4, seed=3)
    assert loader.seed == 3 and loader.epoch == 0
    assert "batch_size=4" in repr(loader) and "seed=3" in repr(loader)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an int, got float"),
    ({"batch_size": True}, TypeError, "batch_size must be an int"),
    ({"shuffle": 1}, TypeError, "shuffle must be a bool"),
    ({"drop_last": "no"}, TypeError, "drop_last must be a bool"),
    ({"prefetch": None}, TypeError, "prefetch must be a bool"),
    ({"collate_fn": 3}, TypeError, "collate_fn must be callable"),
    ({"transform": "flip"}, TypeError, "transform must be callable"),
    ({"seed": -2}, ValueError, "seed must be an integer >= 0"),
    ({"seed": "7"}, TypeError, "seed must be an integer"),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(indexed(4), **kwargs)


def test_dataset_and_set_epoch_errors():
    with pytest.raises(TypeError, match="dataset must have __len__ and __getitem__"):
        DataLoader(iter(range(3)))
    loader = DataLoader(indexed(4))
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        loader.set_epoch(-1)
    with pytest.raises(TypeError, match="epoch"):
        loader.set_epoch(1.0)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python 3.12+ on fork
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_processes_give_the_same_batches(context):
    """num_workers: the same batches in the same order as without workers, augmentation included
    (each batch's generator depends on (seed, epoch, batch) only), for two epochs; an error in a
    worker surfaces at its batch."""
    x = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    y = np.arange(40)

    def epochs(**kwargs):
        loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, seed=3,
                            transform=T.RandomHorizontalFlip(), **kwargs)
        return [[(a.numpy().copy(), b.numpy().copy()) for a, b in loader] for _ in range(2)]

    want = epochs()
    got = epochs(num_workers=2, multiprocessing_context=context)
    assert len(got) == 2 and len(got[0]) == 7
    for ep_want, ep_got in zip(want, got):
        for (xa, ya), (xb, yb) in zip(ep_want, ep_got):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(want[0][0][1], want[1][0][1])  # a new order each epoch
    got = []
    with pytest.raises(KeyError, match="broken sample 5"):
        for (xb,) in DataLoader(Failing(10, bad=5), batch_size=2, num_workers=2, multiprocessing_context=context):
            got.append(xb.numpy().tolist())
    assert got == [[0, 1], [2, 3]]


def test_num_workers_arguments():
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0, got -1"):
        DataLoader(TensorDataset(np.zeros(3)), num_workers=-1)
    with pytest.raises(ValueError, match="multiprocessing_context must be one of"):
        DataLoader(TensorDataset(np.zeros(3)), num_workers=1, multiprocessing_context="threads")


def test_collate_fn_stays_in_this_process_and_need_not_pickle():
    """Workers started by spawn get the dataset and the transform, not collate_fn: a lambda
    collates as well as a function."""
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    loader = DataLoader(TensorDataset(x, np.arange(10)), batch_size=4, num_workers=1,
                        multiprocessing_context="spawn", collate_fn=lambda fields: fields[0].sum(1))
    np.testing.assert_array_equal(np.concatenate(list(loader)), x.sum(1))
