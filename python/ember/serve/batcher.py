"""Dynamic batching: requests gathered into batches that one worker thread runs, so that the event
loop never waits on a kernel and a model swap happens between batches."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Batcher:
    """``await submit(inputs)`` -> (outputs, the model that computed them). Requests wait in a
    queue; the loop takes the first, then more until ``max_batch`` inputs are gathered or
    ``max_wait`` seconds have passed since the first arrived, and runs them as one batch on the
    worker thread. It waits only while other requests are on their way (``arriving()`` ... the
    request handlers count those they are still reading): a lone request runs at once, and
    under load the requests that queue while a batch runs make up the next one. ``max_batch=1``
    runs every request alone (no batching). ``swap(model)`` makes the next batch use ``model``:
    a batch in flight finishes on the model it started with."""

    def __init__(self, model, max_batch: int = 64, max_wait: float = 0.002, on_batch=None):
        if max_batch < 1 or not 0 <= max_wait < float("inf"):
            raise ValueError(f"max_batch must be >= 1 and max_wait a finite number of seconds >= 0, got {max_batch} "
                             f"and {max_wait}")
        self.model, self.max_batch, self.max_wait, self.on_batch = model, max_batch, max_wait, on_batch
        self._queue: asyncio.Queue | None = None
        self._task = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-serve-model")
        self._arriving = 0

    def arriving(self, count: int) -> None:
        """A request handler started (+1) or finished (-1) reading a request it will submit."""
        self._arriving += count

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    @property
    def running(self) -> bool:
        """Whether the batching loop is taking requests."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._worker.shutdown(wait=True)

    def swap(self, model) -> None:
        self.model = model  # a reference assignment: the next batch reads it once

    async def submit(self, inputs: np.ndarray):
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((inputs, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        pending = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            batch, rows = [first], len(first[0])
            deadline = time.perf_counter() + self.max_wait
            while rows < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.perf_counter()
                    if left <= 0 or self._arriving <= 0:  # nothing else is on its way: run now
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if rows + len(item[0]) > self.max_batch:
                    pending = item  # it starts the next batch
                    break
                batch.append(item)
                rows += len(item[0])
            model = self.model
            inputs = batch[0][0] if len(batch) == 1 else np.concatenate([item[0] for item in batch])
            try:
                outputs = await loop.run_in_executor(self._worker, model.predict, inputs)
            except Exception as exc:  # the model failed on this batch: each of its requests hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(rows)
            start = 0
            for rows_in, future in batch:
                n = len(rows_in)
                if not future.done():  # a client that went away cancelled its future
                    future.set_result((outputs[start:start + n], model))
                start += n
