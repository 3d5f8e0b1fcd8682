"""Data-parallel training over MPI (``pip install 'ember[distributed]'``, which brings mpi4py
and an MPI library, so no system MPI is needed).

Run a script, or ``ember train``, under an MPI launcher::

    mpiexec -n 2 ember train --dataset digits --batch-size 128

Each rank holds a replica of the model and trains on its share of every batch; ``fit`` does
this by itself under ``mpiexec`` (``batch_size`` stays the global batch, so N ranks train the
same model one process would), and a hand-written loop uses the pieces:

* :func:`init` joins the job (rank, world size, local rank); :func:`is_main` is rank 0, which
  alone writes checkpoints and logs.
* :class:`DistributedDataParallel` sums gradients across ranks while the backward runs.
* :class:`DistributedSampler` gives each rank its share of each batch.
* :func:`all_reduce`, :func:`broadcast`, :func:`all_gather` (Ember tensors, in place where they
  can be, zero copy for contiguous float32/float64/integer host tensors; device tensors go
  through the host), :func:`barrier`, and their ``*_object`` forms for small picklable values.

On GPUs, :class:`DistributedDataParallel` sums the gradients with NCCL (CuPy's binding) when
every rank has a GPU of its own, on the compute stream; otherwise (several ranks sharing a
GPU, no NCCL) through the host over MPI.

A process started without a launcher is a world of one: everything above works and
communicates nothing, and MPI is not loaded.
"""

from .comm import (DistributedError, World, all_gather, all_gather_object, all_reduce, barrier, broadcast,
                   broadcast_object, init, is_initialized, is_main, launched_world_size, local_rank, rank, world,
                   world_size)
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler

__all__ = ["DistributedDataParallel", "DistributedError", "DistributedSampler", "World", "all_gather",
           "all_gather_object", "all_reduce", "barrier", "broadcast", "broadcast_object", "init", "is_initialized",
           "is_main", "launched_world_size", "local_rank", "rank", "world", "world_size"]
