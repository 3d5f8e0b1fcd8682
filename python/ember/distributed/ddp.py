"""DistributedDataParallel: one model replica per rank, gradients summed across ranks as the
backward produces them.

Design. The parameters are split into buckets (in reverse order of registration, which is
roughly the order the backward finishes them): a parameter of 1 MiB or more alone, the
smaller ones between two such together, up to ``bucket_cap_mb`` a bucket. A post-accumulate hook on every parameter counts the bucket's finished
gradients; once a bucket and every bucket before it are complete, its gradients are scaled by
``gradient_weight`` and copied into one flat buffer (a parameter alone in its bucket is summed
in its own ``.grad``, without a copy), and a non-blocking ``MPI_Iallreduce`` starts on it --
while the backward goes on with earlier layers. Buckets always start in the same order on every rank,
as MPI requires. When the backward has finished, a callback waits for every bucket and makes
each parameter's ``.grad`` a view of its bucket's summed buffer. Every rank thus applies the
same bits to the same weights, so the replicas stay bitwise identical step after step.

A parameter that got no gradient on any rank (an unused layer) keeps ``.grad`` None, as in one
process, so an optimizer leaves it alone: a bucket of several parameters carries, after their
gradients, one "had a gradient" flag per parameter, summed with them; the flags of the buckets of
one parameter (summed in their own ``.grad``) go in one small extra all-reduce. A parameter with a
gradient on some ranks only counts as zeros on the others.

The buckets hold the parameters that require grad. Each synchronised forward and backward
compares the ``requires_grad`` flags with those the buckets were built from, and rebuilds them if
they changed (a layer unfrozen or frozen during training): every rank must make the same change
before the same step (as ``fit``'s callbacks, which run on every rank, do).

Buffers (BatchNorm's running statistics, which each rank's forward updates from its own share
of the batch) are broadcast from rank 0 once the gradients are summed, so after every step all
ranks hold rank 0's statistics and the replicas stay identical, buffers included.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import numpy as np

from .. import backend
from ..autograd import engine, no_grad
from ..kernels._common import is_bf16
from ..nn.module import Module
from ..tensor import Tensor
from .channels import channel_for
from .comm import DistributedError, World, world


# A parameter's gradient of at least this many bytes (or of bucket_cap_mb, if less) is a bucket of
# its own, summed in place: copying it into a shared buffer and back would cost more than the
# extra message.
_ALONE_BYTES = 2**20


class _Bucket:
    __slots__ = ("params", "slices", "flat", "device", "channel", "ready", "request", "done", "summed",
                 "flags_at", "had")

    def __init__(self, params, dtype, device, channel):
        self.params, self.device, self.channel = params, device, channel
        offsets = np.cumsum([0] + [p._data.size for p in params])
        self.slices = [(int(lo), int(hi)) for lo, hi in zip(offsets[:-1], offsets[1:])]
        # Several parameters: one "had a gradient" flag each after the gradients. One: no room
        # (it may be summed in its own .grad); its flag goes in _finish's small all-reduce.
        self.flags_at = int(offsets[-1]) if len(params) > 1 else None
        self.flat = device.xp.zeros(int(offsets[-1]) + (len(params) if len(params) > 1 else 0), dtype)
        self.had = False  # a bucket of one parameter: this rank had its gradient
        self.ready = 0
        self.request = None  # the channel's handle while the sum runs
        self.done = False  # the channel said the sum is complete
        self.summed = None  # the array being summed: flat, or the .grad of a bucket's one parameter


def _signature(module) -> list:
    return [(name, tuple(p.shape), str(p.dtype), bool(p.requires_grad)) for name, p in module.named_parameters()]


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training: call it as the module, run ``backward`` and
    the optimizer as usual; every rank's gradients are summed (weighted by
    ``gradient_weight``, an average by default) before the step.

    At construction every rank must hold a module of the same structure; rank 0's parameters
    and buffers are copied to the others. ``bucket_cap_mb`` bounds the gradient bytes of small
    parameters gathered into one all-reduce (smaller buckets start sooner and overlap more of
    the backward; larger ones cost fewer messages); a parameter of 1 MiB or more is a bucket of
    its own. ``broadcast_buffers``: after each step's gradient sum, send rank 0's
    buffers to every rank.

    ``gradient_weight`` is the factor each rank's gradients are multiplied by before the sum
    (default ``1 / world_size``: the average; ``fit`` sets 1 and weighs each rank's loss by its
    share of the batch instead). ``comm_seconds`` adds up the time this process spent on the
    sums outside the backward's own work -- copying, starting and waiting: the communication
    the backward did not hide.

    ``state_dict`` and ``load_state_dict`` are the wrapped module's (no ``module.`` prefix),
    so a checkpoint loads with or without the wrapper. An exception in the middle of a backward
    leaves the ranks' sums out of step: let it end the job (as an uncaught one does)."""

    def __init__(self, module, bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be an ember.nn.Module, got {type(module).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        if not isinstance(broadcast_buffers, bool):
            raise TypeError("DistributedDataParallel: broadcast_buffers must be a bool")
        self.module = module
        w = world()
        object.__setattr__(self, "_world", w)
        object.__setattr__(self, "broadcast_buffers", broadcast_buffers)
        object.__setattr__(self, "gradient_weight", 1.0 / w.size)
        object.__setattr__(self, "comm_seconds", 0.0)
        object.__setattr__(self, "_sync", True)
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "_next", 0)
        object.__setattr__(self, "_buckets", [])
        object.__setattr__(self, "_bucket_of", {})
        object.__setattr__(self, "_handles", [])
        object.__setattr__(self, "_params", [])  # every parameter once, frozen ones included
        object.__setattr__(self, "_flags", ())  # their requires_grad when the buckets were built
        object.__setattr__(self, "_cap_bytes", float(bucket_cap_mb) * 2**20)
        object.__setattr__(self, "_channels", {})  # kept across rebuilds: making one may be collective
        if w.size == 1:
            return
        self._check_same_structure(w)
        with no_grad():
            self._broadcast_tensors([p for p in module.parameters()] + [b for b in module.buffers() if b is not None])
        seen = set()
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                self._params.append(p)
        self._build_buckets(self._cap_bytes)

    # ------------------------------------------------------------ setup
    def _check_same_structure(self, w: World) -> None:
        mine = _signature(self.module)
        seen = w.all_gather_object(mine, "DistributedDataParallel")
        for r, theirs in enumerate(seen):
            if theirs != mine:
                diff = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b),
                            f"{len(mine)} vs {len(theirs)} parameters")
                raise DistributedError(f"DistributedDataParallel: rank {r}'s model differs from rank {w.rank}'s "
                                       f"({diff}); every rank must build the same model")

    def _build_buckets(self, cap_bytes: float) -> None:
        object.__setattr__(self, "_flags", tuple(p.requires_grad for p in self._params))
        params = [p for p in self._params if p.requires_grad]
        channels = self._channels
        current, size, key = [], 0, None

        def close():
            device, dtype = key
            self._buckets.append(_Bucket(current, dtype, device, channel_for(self._world, device, channels)))

        for p in reversed(params):  # the backward finishes the last layers first
            pkey = (backend.device_of(p._data), np.dtype(np.float32) if is_bf16(p._data) else p._data.dtype)
            nbytes = p._data.size * pkey[1].itemsize
            alone = nbytes >= min(_ALONE_BYTES, cap_bytes)
            if current and (alone or size + nbytes > cap_bytes or pkey != key):
                close()
                current, size = [], 0
            current.append(p)
            size += nbytes
            key = pkey
            if alone:
                close()
                current, size = [], 0
        if current:
            close()
        for i, bucket in enumerate(self._buckets):
            for p in bucket.params:
                self._bucket_of[id(p)] = i
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def _refresh_buckets(self) -> None:
        """Rebuild the buckets and hooks if a parameter was frozen or unfrozen since they were
        built (every rank makes the same change at the same step, so all rebuild alike)."""
        if tuple(p.requires_grad for p in self._params) == self._flags:
            return
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        object.__setattr__(self, "_buckets", [])
        object.__setattr__(self, "_bucket_of", {})
        self._build_buckets(self._cap_bytes)

    def _broadcast_tensors(self, tensors) -> None:
        """Rank 0's values of ``tensors`` (on any device) on every rank, one message per dtype."""
        w = self._world
        groups = {}
        for t in tensors:
            key = np.dtype(np.float32) if is_bf16(t._data) else t._data.dtype
            groups.setdefault(key, []).append(t)
        for dtype, group in groups.items():
            flat = np.concatenate([np.asarray(t._host(), dtype).reshape(-1) for t in group]) if w.rank == 0 else \
                np.empty(sum(t._data.size for t in group), dtype)
            w.wait(w.comm.Ibcast(flat, root=0), "DistributedDataParallel: broadcast from rank 0")
            if w.rank != 0:
                lo = 0
                for t in group:
                    part = flat[lo:lo + t._data.size].reshape(t.shape).astype(t._data.dtype, copy=False)
                    dev = backend.device_of(t._data)
                    t._data[...] = part if dev is backend.CPU else dev.from_host(part)
                    t._bump()
                    lo += t._data.size

    # ------------------------------------------------------------ the module's face
    def forward(self, *args, **kwargs):
        if self._sync and self._params:
            self._refresh_buckets()
        return self.module(*args, **kwargs)

    @property
    def wrapped_module(self) -> Module:
        """The model this wraps: what checkpoints save and load, so that one loads with or
        without the wrapper."""
        return self.module

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward passes only accumulate each rank's own gradients (gradient
        accumulation); the first backward after it sums everything accumulated."""
        previous = self._sync
        object.__setattr__(self, "_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync", previous)

    # ------------------------------------------------------------ the gradient sum
    def _grad_ready(self, param) -> None:
        if not self._sync:
            return
        if not self._armed:
            # Flags changed after the forward: rebuild now. A parameter just unfrozen has no hook
            # in this backward; _finish starts its bucket.
            self._refresh_buckets()
            object.__setattr__(self, "_armed", True)
            engine.queue_callback(self._finish)
        self._buckets[self._bucket_of[id(param)]].ready += 1
        self._launch_ready()

    def _launch_ready(self) -> None:
        buckets = self._buckets
        start = time.perf_counter()
        while self._next < len(buckets) and buckets[self._next].ready >= len(buckets[self._next].params):
            self._launch(buckets[self._next], self.gradient_weight)
            object.__setattr__(self, "_next", self._next + 1)
            if self._poll not in engine.progress_hooks:
                engine.progress_hooks.append(self._poll)
        self._poll()
        self.comm_seconds += time.perf_counter() - start

    def _poll(self) -> None:
        """MPI moves a non-blocking collective on only while it is called: test the ones in
        flight (after each node of the backward, and as buckets complete)."""
        for bucket in self._buckets[:self._next]:
            if not bucket.done and bucket.request is not None:
                bucket.done = bucket.channel.poll(bucket.request)

    def _launch(self, bucket: _Bucket, weight: float) -> None:
        on_host = bucket.device is backend.CPU
        if bucket.flags_at is None:
            bucket.had = weight != 0.0 and bucket.params[0].grad is not None
        if len(bucket.params) == 1 and weight != 0.0:  # a big parameter alone: sum its .grad where it is
            g = bucket.params[0].grad
            g = None if g is None else g._data
            if (g is not None and g.dtype == bucket.flat.dtype and g.flags.c_contiguous
                    and getattr(g.flags, "writeable", True) and backend.device_of(g) is bucket.device):
                if weight != 1.0:
                    g *= weight
                self._start(bucket, g)
                return
        flat = bucket.flat
        if bucket.flags_at is not None:
            flat[bucket.flags_at:] = 0.0 if weight == 0.0 else 1.0
        for i, (p, (lo, hi)) in enumerate(zip(bucket.params, bucket.slices)):
            g = None if p.grad is None or weight == 0.0 else p.grad._data.reshape(-1)
            if g is None:
                flat[lo:hi] = 0
                if bucket.flags_at is not None:
                    flat[bucket.flags_at + i] = 0.0
            elif weight == 1.0:
                flat[lo:hi] = g
            elif on_host:
                np.multiply(g, weight, out=flat[lo:hi], casting="unsafe")
            else:
                flat[lo:hi] = g * weight
        self._start(bucket, flat)

    @staticmethod
    def _start(bucket: _Bucket, arr) -> None:
        bucket.summed, bucket.done = arr, False
        bucket.request = bucket.channel.start(arr)

    def _finish(self) -> None:
        """After the backward: start what has not started, wait for all, hand out the sums."""
        start = time.perf_counter()
        try:
            while self._next < len(self._buckets):  # parameters this backward did not reach
                self._launch(self._buckets[self._next], self.gradient_weight)
                object.__setattr__(self, "_next", self._next + 1)
            w = self._world
            alone = [b for b in self._buckets if b.flags_at is None]
            if alone:  # how many ranks had the gradient of each parameter alone in its bucket
                had = np.array([b.had for b in alone], np.float64)
                had_request = w.comm.Iallreduce(w.mpi.IN_PLACE, had, op=w.mpi.SUM)
            for bucket in self._buckets:
                bucket.channel.finish(bucket.summed, bucket.request)
                if bucket.summed is bucket.flat:
                    nobody = ()
                    if bucket.flags_at is not None:
                        flags = bucket.flat[bucket.flags_at:]
                        flags = flags if bucket.device is backend.CPU else bucket.device.to_host(flags)
                        nobody = np.flatnonzero(np.asarray(flags) == 0)
                    for p, (lo, hi) in zip(bucket.params, bucket.slices):
                        p.grad = Tensor._wrap(bucket.flat[lo:hi].reshape(p.shape).astype(p._data.dtype, copy=False))
                    for i in nobody:  # no rank had a gradient: None, as in one process
                        bucket.params[i].grad = None
                bucket.ready, bucket.request, bucket.summed = 0, None, None
            if alone:
                w.wait(had_request, "DistributedDataParallel: gradient all-reduce")
                for bucket, n in zip(alone, had):
                    if n == 0:
                        bucket.params[0].grad = None
            buffers = [b for b in self.module.buffers() if b is not None] if self.broadcast_buffers else []
            if buffers:
                with no_grad():
                    self._broadcast_tensors(buffers)
        finally:
            if self._poll in engine.progress_hooks:
                engine.progress_hooks.remove(self._poll)
            object.__setattr__(self, "_armed", False)
            object.__setattr__(self, "_next", 0)
            self.comm_seconds += time.perf_counter() - start

    def sync_without_data(self) -> None:
        """For a step in which this rank has no samples (an epoch's last, short batch split over
        more ranks than it has samples): take part in the gradient sum with zeros, so the other
        ranks' sum completes, and receive its result as the gradients."""
        if self._world.size == 1:
            return
        self._refresh_buckets()
        start = time.perf_counter()
        for bucket in self._buckets:
            self._launch(bucket, 0.0)
        object.__setattr__(self, "_next", len(self._buckets))
        self.comm_seconds += time.perf_counter() - start
        self._finish()

    def release(self) -> None:
        """Unregister the gradient hooks: the wrapped module's parameters train alone again
        (``fit`` releases the wrapper it made when it returns)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        object.__setattr__(self, "_buckets", [])
        object.__setattr__(self, "_bucket_of", {})
        object.__setattr__(self, "_params", [])  # and no rebuild
        object.__setattr__(self, "_flags", ())

    # ------------------------------------------------------------ checks
    def check_in_sync(self) -> None:
        """Raise :class:`DistributedError` on every rank unless every rank's parameters and
        buffers are bitwise identical (a digest of them is compared across ranks)."""
        digest = hashlib.blake2b(digest_size=16)
        for _, t in [*self.module.named_parameters(), *self.module.named_buffers()]:
            if t is not None:
                digest.update(np.ascontiguousarray(t._host()).tobytes())
        seen = self._world.all_gather_object(digest.hexdigest(), "check_in_sync")
        odd = [r for r, d in enumerate(seen) if d != seen[0]]
        if odd:
            raise DistributedError(f"check_in_sync: the weights of rank(s) {odd} differ from rank 0's")

    def extra_repr(self) -> str:
        return f"world_size={self._world.size}, buckets={len(self._buckets)}"
