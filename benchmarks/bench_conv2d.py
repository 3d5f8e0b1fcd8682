"""conv2d benchmarks, forward and forward+backward: ember against PyTorch CPU (oneDNN, when
installed; autograd for the backward) and explicit im2col + NumPy GEMM, in one run, 2 threads
and 1; GFLOP/s from the work each case records.

The layers of a small CNN at batch 64 (``ember.bench``'s catalogue; ``ember bench conv2d
conv2d_train --full`` runs the same): its first layer (3 -> 32 channels, 32x32, 3x3), a
64 -> 64 layer at 32x32, 128 -> 128 at 16x16, a 1x1 convolution, a depthwise 3x3 and a
stride-2 layer. Forward+backward is what a training step runs: the forward, the weight and
bias gradients, and the input gradient except for the first layer (its input is the data).

    python -m pytest benchmarks/bench_conv2d.py --benchmark-only --benchmark-json=conv.json
    python benchmarks/report.py conv.json
"""

from helpers import time_case

CATALOGUE = {"bench_conv2d_forward": ("conv2d",), "bench_conv2d_forward_backward": ("conv2d_train",)}


def bench_conv2d_forward(benchmark, item):
    time_case(benchmark, item)


def bench_conv2d_forward_backward(benchmark, item):
    time_case(benchmark, item)
