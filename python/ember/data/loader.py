"""DataLoader: batches of a dataset, shuffled and augmented reproducibly, prepared in the background.

Every random choice of an epoch derives from ``(seed, epoch)`` alone: the shuffle order from
``SeedSequence(seed, spawn_key=(epoch, 0, 0))`` and the generator handed to ``transform`` for
batch ``b`` from ``SeedSequence(seed, spawn_key=(epoch, 1, b))``. So an epoch's batches do not
depend on what ran before, on prefetching, or on thread timing, and ``set_epoch(e)`` replays
epoch ``e`` exactly.
"""

from __future__ import annotations

import numbers
import os
import queue
import threading

import numpy as np

from .. import backend
from ..tensor import Tensor
from ..factories import from_numpy
from .dataset import fetch_batch, nonnegative_int, resolve_seed

_QUEUE_DEPTH = 2


def default_collate(fields: tuple) -> tuple:
    """Each field's NumPy batch as an ember Tensor (sharing memory when already contiguous)."""
    return tuple(from_numpy(np.ascontiguousarray(f)) for f in fields)


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"DataLoader: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__``; a ``get_batch(indices)``
            method (see ``Dataset``) is used when present to fetch a batch in one go.
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: visit the samples in a new random order each epoch.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        collate_fn: called with the tuple of NumPy field batches; its result is what the
            iteration yields. The default turns each field into an ember Tensor.
        transform: ``transform(x, rng)`` applied to the first field (the inputs, shape
            ``(N, ...)``) of every batch, before ``collate_fn``; ``rng`` is a
            ``np.random.Generator`` specific to (seed, epoch, batch index).
        seed: the root of all randomness; None draws one at construction from ember's default
            generator (so ``ember.manual_seed`` makes runs reproducible).
        prefetch: prepare the next batches (fetch, transform, collate) on a background thread
            while the current one is being used. The results are identical either way.
        num_workers: with N > 0, N worker processes fetch and transform the batches (the
            collation stays in this process), two per worker in flight; the batches are the same
            as with none, in the same order. ``multiprocessing_context`` picks how they start:
            'fork' (the default where it exists: the dataset is shared, not copied) or 'spawn' /
            'forkserver' (the dataset and transform must pickle).
        device: where the yielded tensors live (``"cpu"`` by default; ``"cuda"`` copies each
            collated batch's tensors there as it is handed out).
        batch_sampler: instead of ``batch_size``, ``shuffle`` and ``drop_last``: an iterable of
            index arrays, one per batch, with a length (and a ``set_epoch(epoch)`` method if its
            batches change with the epoch), such as ``ember.distributed.DistributedSampler``.
            An empty index array gives a batch of zero samples (the fields' shapes otherwise).

    Iterating runs epoch ``loader.epoch``; once the last batch has been handed out the loader
    moves on to the next epoch. ``set_epoch(e)`` selects the epoch explicitly (an iteration
    abandoned part-way does not advance it).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 transform=None, seed=None, prefetch=True, device=None, num_workers=0, multiprocessing_context=None,
                 batch_sampler=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__, got {type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"DataLoader: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable or None, got {type(collate_fn).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable or None, got {type(transform).__name__}")
        if batch_sampler is not None:
            if not (hasattr(batch_sampler, "__iter__") and hasattr(batch_sampler, "__len__")):
                raise TypeError("DataLoader: batch_sampler must be iterable and have a length, got "
                                f"{type(batch_sampler).__name__}")
            if batch_size != 1 or shuffle or drop_last:
                raise ValueError("DataLoader: batch_sampler decides the batches; leave batch_size, shuffle and "
                                 "drop_last at their defaults")
            batch_size = getattr(batch_sampler, "batch_size", 1)
        self.batch_sampler = batch_sampler
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = _check_flag(shuffle, "shuffle")
        self.drop_last = _check_flag(drop_last, "drop_last")
        self.prefetch = _check_flag(prefetch, "prefetch")
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.transform = transform
        self._seed = resolve_seed(seed, "DataLoader: seed")
        self._epoch = 0
        self.device = backend.get(device) if device is not None else None
        self.num_workers = nonnegative_int(num_workers, "DataLoader: num_workers")
        self.multiprocessing_context = None
        if self.num_workers:
            import multiprocessing  # only for workers: keeps `import ember` light

            methods = multiprocessing.get_all_start_methods()
            if multiprocessing_context is None:
                multiprocessing_context = "fork" if "fork" in methods else "spawn"
            if multiprocessing_context not in methods:
                raise ValueError(f"DataLoader: multiprocessing_context must be one of {methods}, "
                                 f"got {multiprocessing_context!r}")
            self.multiprocessing_context = multiprocessing_context

    @property
    def seed(self) -> int:
        """The seed all shuffling and augmentation derive from."""
        return self._seed

    @property
    def epoch(self) -> int:
        """The epoch the next iteration runs."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration run epoch ``epoch`` (its order and augmentation)."""
        self._epoch = nonnegative_int(epoch, "DataLoader.set_epoch: epoch")

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> _LoaderIterator:
        return _LoaderIterator(self, _EpochPlan(self, self._epoch))

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} with {len(self.dataset)} samples, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"seed={self._seed}, epoch={self._epoch}, prefetch={self.prefetch}, num_workers={self.num_workers})")


class _EpochPlan:
    """The batches of one epoch, each buildable independently of the others (and of the
    iterator, so the prefetch thread holds no reference to it)."""

    def __init__(self, loader: DataLoader, epoch: int):
        self.epoch = epoch
        self.seed = loader.seed
        self.dataset = loader.dataset
        self.transform = loader.transform
        self.collate_fn = loader.collate_fn
        sampler = loader.batch_sampler
        # Ranks that share a seed must not share their augmentation's random draws.
        self.stream = (getattr(sampler, "rank", 0),) if getattr(sampler, "rank", 0) else ()
        if sampler is not None:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            self.batches = [np.asarray(b, np.int64).reshape(-1) for b in sampler]
            return
        n = len(loader.dataset)
        if loader.shuffle:
            order = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch, 0, 0))).permutation(n)
        else:
            order = np.arange(n)
        bs = loader.batch_size
        self.batches = [order[lo:lo + bs] for lo in range(0, len(loader) * bs, bs)]

    def __len__(self) -> int:
        return len(self.batches)

    def fields(self, index: int) -> tuple:
        """Batch ``index`` fetched and transformed: NumPy arrays, before collation."""
        indices = self.batches[index]
        # A rank's empty share of a short batch: a sample made as the others are (so the shapes and
        # dtypes after the transform agree), then no rows of it.
        empty = len(indices) == 0
        fields = fetch_batch(self.dataset, np.zeros(1, np.int64) if empty else indices)
        if self.transform is not None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed,
                                                               spawn_key=(self.epoch, 1, index, *self.stream)))
            fields = (self.transform(fields[0], rng),) + fields[1:]
        return tuple(f[:0] for f in fields) if empty else fields

    def build(self, index: int):
        return self.collate_fn(self.fields(index))

    def __getstate__(self) -> dict:
        # What goes to worker processes: they only fetch and transform (``fields``); the
        # collation stays in this process, so ``collate_fn`` need not pickle.
        return {k: v for k, v in self.__dict__.items() if k != "collate_fn"}


_WORKER_PLAN = None  # in a worker process: the epoch plan it builds batches of


def _init_worker(plan: _EpochPlan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan


def _worker_fields(index: int) -> tuple:
    return _WORKER_PLAN.fields(index)


class _Workers:
    """Worker processes building an epoch's batches' fields, ``depth`` batches ahead, handed
    back in order."""

    def __init__(self, plan: _EpochPlan, workers: int, context: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._plan = plan
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(context),
                                         initializer=_init_worker, initargs=(plan,))
        self._depth = 2 * workers
        self._pending = {}
        self._submitted = 0

    def get(self, index: int):
        while self._submitted < min(len(self._plan), index + self._depth):
            self._pending[self._submitted] = self._pool.submit(_worker_fields, self._submitted)
            self._submitted += 1
        return self._plan.collate_fn(self._pending.pop(index).result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: per thread), so that preparing
    batches only uses cores the kernels' threads leave idle instead of stalling them (a parallel
    region waits for its slowest thread). When the training loop does wait for a batch, the
    kernels are idle and the thread gets the CPU anyway."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not supported here: keep the normal priority
        pass


def _prefetch_worker(plan: _EpochPlan, out: queue.Queue, stop: threading.Event) -> None:
    """Build the plan's batches in order into ``out``; stop early when ``stop`` is set. An
    exception ends the work and is passed on in place of the batch that raised it."""
    _lower_priority()
    for index in range(len(plan)):
        if stop.is_set():
            return
        try:
            item = (True, plan.build(index))
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, raised there)
            out.put((False, exc))
            return
        out.put(item)


class _LoaderIterator:
    """One pass over an epoch's batches, built in the caller's thread or by a prefetch thread.

    Closing it (``close()``, finishing, or it being garbage-collected) stops and joins the
    thread.
    """

    def __init__(self, loader: DataLoader, plan: _EpochPlan):
        self._loader = loader
        self._plan = plan
        self._next = 0
        self._done = False
        self._thread = None
        self._workers = None
        if loader.num_workers and len(plan):
            self._workers = _Workers(plan, loader.num_workers, loader.multiprocessing_context)
        elif loader.prefetch and len(plan):
            self._queue = queue.Queue(maxsize=_QUEUE_DEPTH)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=_prefetch_worker, args=(plan, self._queue, self._stop),
                                            name="ember-DataLoader-prefetch", daemon=True)
            self._thread.start()

    def __iter__(self) -> _LoaderIterator:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._next == len(self._plan):
            self._finish()
            raise StopIteration
        try:
            if self._workers is not None:
                batch = self._workers.get(self._next)
            elif self._thread is None:
                batch = self._plan.build(self._next)
            else:
                ok, batch = self._queue.get()
                if not ok:
                    raise batch
        except BaseException:
            self._done = True
            self.close()
            raise
        self._next += 1
        if self._next == len(self._plan):
            self._finish()
        dev = self._loader.device
        if dev is not None and isinstance(batch, tuple):
            batch = tuple(b.to(dev) if isinstance(b, Tensor) else b for b in batch)
        return batch

    def _finish(self) -> None:
        """Every batch handed out: the loader moves on to the next epoch."""
        self._done = True
        self._loader._epoch = self._plan.epoch + 1
        self.close()

    def close(self) -> None:
        """Stop the prefetch thread or the worker processes (if any) and wait for them to exit."""
        self._done = True
        workers, self._workers = getattr(self, "_workers", None), None
        if workers is not None:
            workers.close()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        while thread.is_alive() and thread is not threading.current_thread():
            try:  # make room so a worker blocked on a full queue can see the stop flag
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)

    def __del__(self):
        self.close()
