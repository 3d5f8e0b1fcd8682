"""The process group: MPI's world as Ember sees it, and collectives on Ember tensors.

A process started by ``mpiexec -n N`` (MPICH, Open MPI, Intel MPI -- whatever ``mpi4py`` was
given) joins the job's world in :func:`init`; a process started any other way is a world of
one, in which every collective returns its input and MPI is never loaded, so the same script
runs with and without ``mpiexec``.

Every collective is started non-blocking and waited for with a deadline (``init(timeout=)``,
or ``EMBER_DIST_TIMEOUT`` seconds, 300 by default): a rank whose peers stopped answering raises
:class:`DistributedError` instead of hanging. An exception nobody catches on any rank of a
world of several prints its traceback and aborts the whole job (``MPI_Abort``), so one rank's
failure ends every rank at once; a rank whose peer failed before it joined waits to join for as
long, then says so and ends.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

import numpy as np

from .. import backend
from ..kernels._common import is_bf16
from ..tensor import Tensor

# Where launchers announce the job: MPICH / Intel MPI (Hydra, Slurm's PMI), Open MPI, MVAPICH.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_DEFAULT_TIMEOUT = 300.0
_OPS = ("sum", "mean", "max", "min", "prod")
# How long an aborting rank waits after printing its error before it ends the job.
_DRAIN_SECONDS = 0.5


class DistributedError(RuntimeError):
    """A collective failed: the ranks disagree about what they exchange, or a peer stopped
    answering within the timeout."""


def launched_world_size() -> int:
    """The number of processes the launcher (``mpiexec``, ``srun``) started this one among,
    read from the environment; 1 when it was not started by one."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value:
            try:
                size = int(value)
            except ValueError:
                raise DistributedError(f"the launcher set {name}={value!r}, which is not a process count") from None
            return max(size, 1)
    return 1


def _timeout_from_env() -> float:
    text = os.environ.get("EMBER_DIST_TIMEOUT")
    if not text:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"EMBER_DIST_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


class World:
    """This process's place in the job: ``rank`` of ``size``, ``local_rank`` of ``local_size``
    on this machine, the collectives' ``timeout`` in seconds, and the MPI communicator
    (``comm``; None in a world of one)."""

    def __init__(self, comm, mpi, timeout):
        self.comm, self.mpi, self.timeout = comm, mpi, timeout
        if comm is None:
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
        else:
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
            local = comm.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
            local.Free()

    def __repr__(self) -> str:
        return (f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"local_size={self.local_size}, timeout={self.timeout:g})")

    # ------------------------------------------------------------ waiting with a deadline
    def wait(self, request, what: str) -> None:
        """Wait for a non-blocking MPI request, polling (MPI progresses it while polled) and
        giving up after the timeout."""
        if request.Test():
            return
        deadline = time.monotonic() + self.timeout
        polls = 0
        while not request.Test():
            polls += 1
            if polls % 256 == 0:
                if time.monotonic() > deadline:
                    raise DistributedError(
                        f"{what}: rank {self.rank} got no answer from the other ranks within {self.timeout:g} s "
                        "(a rank failed, is stuck, or skipped this collective); init(timeout=...) or "
                        "EMBER_DIST_TIMEOUT sets the limit")
                os.sched_yield()

    # ------------------------------------------------------------ objects (small, pickled)
    def all_gather_object(self, obj, what: str = "all_gather_object") -> list:
        if self.comm is None:
            return [obj]
        mpi = self.mpi
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self.wait(self.comm.Iallgather(np.array([data.size], np.int64), sizes), what)
        displacements = np.zeros(self.size, np.int64)
        np.cumsum(sizes[:-1], out=displacements[1:])
        out = np.empty(int(sizes.sum()), np.uint8)
        self.wait(self.comm.Iallgatherv(data, [out, sizes, displacements, mpi.BYTE]), what)
        return [pickle.loads(out[d:d + s].tobytes()) for d, s in zip(displacements, sizes)]

    def broadcast_object(self, obj, src: int = 0, what: str = "broadcast_object"):
        if self.comm is None:
            return obj
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == src else b""
        size = np.array([len(data)], np.int64)
        self.wait(self.comm.Ibcast(size, root=src), what)
        buf = np.frombuffer(data, np.uint8).copy() if self.rank == src else np.empty(int(size[0]), np.uint8)
        self.wait(self.comm.Ibcast(buf, root=src), what)
        return obj if self.rank == src else pickle.loads(buf.tobytes())

    def any(self, flag: bool, what: str) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        if self.comm is None:
            return bool(flag)
        buf = np.array([1 if flag else 0], np.int32)
        self.wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buf, op=self.mpi.MAX), what)
        return bool(buf[0])

    def sum_array(self, arr: np.ndarray, what: str) -> np.ndarray:
        """``arr`` (a contiguous host array of a plain numeric dtype) summed over the ranks in
        place; every rank gets the same bits."""
        if self.comm is not None:
            self.wait(self.comm.Iallreduce(self.mpi.IN_PLACE, arr, op=self.mpi.SUM), what)
        return arr

    def abort(self, code: int = 1) -> None:
        if self.comm is None:
            raise SystemExit(code)
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(_DRAIN_SECONDS)  # the launcher forwards what was printed before it ends every rank
        self.comm.Abort(code)


_world: World | None = None


def _abort_on_uncaught(previous):
    def hook(exc_type, exc, tb):
        previous(exc_type, exc, tb)
        world = _world
        if world is not None and world.comm is not None:
            print(f"ember.distributed: rank {world.rank} of {world.size} failed with {exc_type.__name__}; "
                  "aborting every rank", file=sys.stderr, flush=True)
            world.abort(1)

    return hook


def init(timeout: float | None = None) -> World:
    """Join the job this process was launched in (``mpiexec -n N ...``) and return its
    :class:`World`; a second call returns the same world. A process not started by an MPI
    launcher gets a world of one and needs no MPI. In a world of several, the CPU kernels use
    this machine's CPUs divided by the ranks on it (unless ``EMBER_NUM_THREADS`` says
    otherwise), and an exception no rank catches aborts the job instead of leaving the other
    ranks waiting.

    On a machine with GPUs, rank i of the machine works on GPU i (modulo their number): call
    ``init`` before moving a model to ``cuda``.

    ``timeout``: seconds a collective waits for the other ranks before it raises
    :class:`DistributedError` (default ``EMBER_DIST_TIMEOUT``, else 300)."""
    global _world
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            raise ValueError(f"init: timeout must be a positive number of seconds, got {timeout!r}")
    if _world is not None:
        if timeout is not None:
            _world.timeout = float(timeout)
        return _world
    limit = float(timeout) if timeout is not None else _timeout_from_env()
    if launched_world_size() == 1:
        _world = World(None, None, limit)
        return _world
    world = _join(limit)
    if world.size > 1:
        if "EMBER_NUM_THREADS" not in os.environ:
            from .. import _runtime

            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            _runtime.set_num_threads(max(1, cpus // world.local_size))
        sys.excepthook = _abort_on_uncaught(sys.excepthook)
        gpus = backend.cuda_device_count()
        if gpus and backend.cuda_status() == "available":  # rank i of a machine works on its GPU i (mod count)
            backend.get("cuda").xp.cuda.runtime.setDevice(world.local_rank % gpus)
    _world = world
    return world


def _join(limit: float) -> World:
    """The job's world, MPI started (by importing mpi4py) under a deadline: MPI's start waits,
    unreachable from Python, for every process of the job, so a rank that failed before it
    called ``init`` would leave the others waiting for ever; after ``limit`` seconds this rank
    says why and ends, and the launcher ends the job."""
    rank = next((os.environ[name] for name in _RANK_VARIABLES if os.environ.get(name)), "?")

    message = (f"ember.distributed: rank {rank} could not join the job within {limit:g} s: MPI starts once every "
               "rank has called ember.distributed.init, so another rank probably failed before it did (its error "
               "is above); init(timeout=...) or EMBER_DIST_TIMEOUT sets the wait\n")
    backend.CPU.kernels.watchdog_arm(limit, message)
    try:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("this process was started by an MPI launcher, and ember.distributed needs mpi4py to "
                              "join the job: pip install 'ember[distributed]'") from exc
        return World(MPI.COMM_WORLD, MPI, limit)  # its local ranks: a collective, within the deadline too
    finally:
        backend.CPU.kernels.watchdog_disarm()


def world() -> World:
    """The world :func:`init` joined (joining it now if it has not been)."""
    return _world if _world is not None else init()


def is_initialized() -> bool:
    return _world is not None


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``."""
    return world().rank


def world_size() -> int:
    return world().size


def local_rank() -> int:
    """This process's rank among those on the same machine."""
    return world().local_rank


def is_main() -> bool:
    """Whether this is rank 0: the rank that writes checkpoints and logs."""
    return world().rank == 0


def barrier() -> None:
    """Return once every rank has called it."""
    w = world()
    if w.comm is not None:
        w.wait(w.comm.Ibarrier(), "barrier")


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (anything picklable), in rank order."""
    return world().all_gather_object(obj)


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    w = world()
    _check_rank(w, src, "broadcast_object")
    return w.broadcast_object(obj, src)


# ---------------------------------------------------------------- tensors
def _check_rank(w: World, src, what: str) -> int:
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < w.size:
        raise ValueError(f"{what}: src must be a rank from 0 to {w.size - 1}, got {src!r}")
    return int(src)


def _host_buffer(tensor, what: str) -> np.ndarray:
    """The array MPI exchanges for ``tensor``: its own storage when that is a contiguous host
    array of a dtype MPI knows, else a host copy (a device tensor's), float32 for bf16."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected an ember Tensor, got {type(tensor).__name__}")
    arr = tensor._data
    if backend.device_of(arr) is not backend.CPU:
        arr = tensor._host()
    if is_bf16(arr):
        return arr.astype(np.float32)
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def _agree(w: World, what: str, shape, dtype) -> None:
    """Raise on every rank unless every rank passed the same shape and dtype."""
    seen = w.all_gather_object((tuple(shape), str(dtype)), what)
    odd = [r for r, s in enumerate(seen) if s != seen[0]]
    if odd:
        raise DistributedError(f"{what}: the ranks passed different tensors -- rank 0 has shape {seen[0][0]} "
                               f"{seen[0][1]}, rank {odd[0]} has shape {seen[odd[0]][0]} {seen[odd[0]][1]}")


def _on_device_of(tensor, host: np.ndarray):
    """``host`` cast to ``tensor``'s dtype, on ``tensor``'s device."""
    host = host.astype(tensor._data.dtype, copy=False)
    dev = backend.device_of(tensor._data)
    return host if dev is backend.CPU else dev.from_host(host)


def _write_back(tensor, buf) -> None:
    if buf is not tensor._data:
        tensor._data[...] = _on_device_of(tensor, buf)
    tensor._bump()


def all_reduce(tensor, op: str = "sum"):
    """Combine ``tensor`` over every rank in place with ``op`` ('sum', 'mean', 'max', 'min',
    'prod'); every rank ends with the same values (of a bool tensor: 'sum' and 'max' are a
    logical or, 'prod' and 'min' a logical and). Returns the tensor."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {_OPS}, got {op!r}")
    buf = _host_buffer(tensor, "all_reduce")
    if op == "mean" and buf.dtype.kind != "f":
        raise TypeError(f"all_reduce: op='mean' needs a floating-point tensor, got {tensor.dtype}")
    w = world()
    if w.comm is None:
        return tensor
    if buf.dtype == np.bool_:  # as in PyTorch: a sum or max is a logical or, a product or min a logical and
        buf, op = buf.view(np.uint8), {"sum": "max", "prod": "min"}.get(op, op)
    _agree(w, "all_reduce", buf.shape, buf.dtype)
    mpi_op = {"sum": w.mpi.SUM, "mean": w.mpi.SUM, "max": w.mpi.MAX, "min": w.mpi.MIN, "prod": w.mpi.PROD}[op]
    w.wait(w.comm.Iallreduce(w.mpi.IN_PLACE, buf, op=mpi_op), "all_reduce")
    if op == "mean":
        buf /= w.size
    _write_back(tensor, buf)
    return tensor


def broadcast(tensor, src: int = 0):
    """Overwrite ``tensor`` on every rank with rank ``src``'s values, in place. Returns it."""
    buf = _host_buffer(tensor, "broadcast")
    w = world()
    src = _check_rank(w, src, "broadcast")
    if w.comm is None:
        return tensor
    _agree(w, "broadcast", buf.shape, buf.dtype)
    w.wait(w.comm.Ibcast(buf, root=src), "broadcast")
    _write_back(tensor, buf)
    return tensor


def all_gather(tensor) -> Tensor:
    """Every rank's ``tensor`` (all of one shape and dtype) stacked in rank order: a new tensor
    of shape ``(world_size, *tensor.shape)``."""
    buf = _host_buffer(tensor, "all_gather")
    w = world()
    if w.comm is None:
        return Tensor._wrap(_on_device_of(tensor, np.array(buf, copy=True)[None]))
    _agree(w, "all_gather", buf.shape, buf.dtype)
    out = np.empty((w.size, *buf.shape), buf.dtype)
    w.wait(w.comm.Iallgather(buf, out), "all_gather")
    return Tensor._wrap(_on_device_of(tensor, out))
