"""Shared by the benchmark files: thread limits applied to ember and every reference at once."""

import contextlib
import os

from threadpoolctl import threadpool_limits

import ember

try:
    import torch
except ImportError:  # optional reference
    torch = None

# 2 threads (or as many as this process may use, if fewer) and 1.
THREADS = sorted({min(2, len(os.sched_getaffinity(0))), 1}, reverse=True)


@contextlib.contextmanager
def thread_limit(n):
    """ember, NumPy's BLAS (threadpoolctl) and PyTorch all on n threads."""
    previous_ember = ember.get_num_threads()
    previous_torch = torch.get_num_threads() if torch is not None else None
    ember.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        ember.set_num_threads(previous_ember)
        if torch is not None:
            torch.set_num_threads(previous_torch)
