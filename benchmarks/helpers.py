"""Shared by the benchmark files: thread limits applied to ember and every reference at once."""

import contextlib
import os
import time

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


def settle(benchmark, seconds=0.25):
    """Pause before a timed case so that the previous case's library threads (OpenBLAS and
    OpenMP workers spin for up to ~0.1 s after a call) are idle and do not compete with it."""
    if not getattr(benchmark, "disabled", False):
        time.sleep(seconds)
