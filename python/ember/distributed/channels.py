"""How an array of one device is summed over the ranks, in place.

* Host arrays: MPI's non-blocking ``Iallreduce`` on the array itself.
* CUDA arrays, one GPU per rank: NCCL (through CuPy's binding), enqueued on CuPy's current
  stream, so the kernels after it on that stream (the optimizer's step) see the sum without the
  host waiting; its communicator is set up once, its id sent from rank 0 over MPI.
* Any other device array (a GPU shared by several ranks, where NCCL refuses to run, or a
  CUDA setup without NCCL): copied to the host, summed by MPI, copied back.

A channel's ``start(array)`` returns a handle; ``poll(handle)`` says whether it is done (and
moves MPI on); ``finish(array, handle)`` waits, with the world's timeout, and leaves the sum in
the array.
"""

from __future__ import annotations

import time

from .. import backend
from .comm import DistributedError, World


class HostChannel:
    def __init__(self, world: World):
        self.world = world

    def start(self, arr):
        w = self.world
        return w.comm.Iallreduce(w.mpi.IN_PLACE, arr, op=w.mpi.SUM)

    @staticmethod
    def poll(handle) -> bool:
        return handle.Test()

    def finish(self, arr, handle) -> None:
        self.world.wait(handle, "DistributedDataParallel: gradient all-reduce")


class StagedChannel:
    """Through the host: the device array is copied out when its sum starts and back when it ends."""

    def __init__(self, world: World, device):
        self.world, self.device = world, device

    def start(self, arr):
        host = self.device.to_host(arr)
        w = self.world
        return host, w.comm.Iallreduce(w.mpi.IN_PLACE, host, op=w.mpi.SUM)

    @staticmethod
    def poll(handle) -> bool:
        return handle[1].Test()

    def finish(self, arr, handle) -> None:
        host, request = handle
        self.world.wait(request, "DistributedDataParallel: gradient all-reduce")
        arr[...] = self.device.from_host(host)


class NcclChannel:
    """NCCL on CuPy's current stream (the GPU this rank selected in ``init``)."""

    def __init__(self, world: World, device, nccl):
        self.world, self.device, self.nccl = world, device, nccl
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.broadcast_object(uid, 0, "NCCL: the communicator's id")
        self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "float16": nccl.NCCL_FLOAT16,
                      "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64}

    def start(self, arr):
        kind = self.types.get(str(arr.dtype))
        if kind is None:
            raise TypeError(f"NCCL sums float32, float64, float16, int32 and int64 arrays, not {arr.dtype}")
        stream = self.device.xp.cuda.get_current_stream()
        self.comm.allReduce(arr.data.ptr, arr.data.ptr, arr.size, kind, self.nccl.NCCL_SUM, stream.ptr)
        return stream

    @staticmethod
    def poll(handle) -> bool:
        return True  # ordered on the stream: nothing for the host to wait for

    def finish(self, arr, stream) -> None:
        deadline = time.monotonic() + self.world.timeout
        while not stream.done:  # only where the host needs the result now; errors surface here
            self.comm.check_async_error()
            if time.monotonic() > deadline:
                self.comm.abort()
                raise DistributedError(f"NCCL all-reduce: rank {self.world.rank} got no answer from the other ranks "
                                       f"within {self.world.timeout:g} s")
            time.sleep(50e-6)


def channel_for(world: World, device, cache: dict):
    """The channel that sums arrays of ``device`` (one per device and world, kept in ``cache``)."""
    if device.name in cache:
        return cache[device.name]
    if device is backend.CPU:
        channel = HostChannel(world)
    else:
        nccl = getattr(getattr(device.xp, "cuda", None), "nccl", None) if device.name == "cuda" else None
        usable = (nccl is not None and bool(getattr(nccl, "available", False))
                  and world.local_size <= backend.cuda_device_count())  # NCCL refuses two ranks on one GPU
        if not world.any(not usable, "DistributedDataParallel: choosing NCCL"):  # all ranks, or none
            channel = NcclChannel(world, device, nccl)
        else:
            channel = StagedChannel(world, device)
    cache[device.name] = channel
    return channel
