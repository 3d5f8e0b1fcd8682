"""Pooling benchmarks: ember against PyTorch CPU (when installed) and NumPy, in one run.

Max pooling 2x2 / stride 2 on the activation of a 32-channel conv layer (64 x 32 x 30 x 30):
the forward with argmax indices, and forward + backward, as a training step runs them
(``ember.bench``'s catalogue: ``ember bench max_pool2d max_pool2d_train``). 2 threads and 1;
GB/s of the input read.

    python -m pytest benchmarks/bench_pool2d.py --benchmark-only --benchmark-json=pool.json
"""

from helpers import time_case

CATALOGUE = {"bench_max_pool2d": ("max_pool2d", "max_pool2d_train")}


def bench_max_pool2d(benchmark, item):
    time_case(benchmark, item)
