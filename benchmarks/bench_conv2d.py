"""conv2d forward benchmarks: ember against PyTorch CPU (oneDNN, when installed) and explicit
im2col + NumPy GEMM, in one run, 2 threads and 1; GFLOP/s in ``extra_info``.

The layers of a small CNN at batch 64: its first layer (3 -> 32 channels, 32x32, 3x3), a
64 -> 64 layer at 32x32, 128 -> 128 at 16x16, a 1x1 convolution, a depthwise 3x3 and a
stride-2 layer.

    python -m pytest benchmarks/bench_conv2d.py --benchmark-only
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from ember import ops
from helpers import THREADS, settle, thread_limit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None

# name, input shape, weight shape, conv arguments
LAYERS = [
    ("first 3-32 32x32", (64, 3, 32, 32), (32, 3, 3, 3), dict(padding=1)),
    ("64-64 32x32", (64, 64, 32, 32), (64, 64, 3, 3), dict(padding=1)),
    ("128-128 16x16", (64, 128, 16, 16), (128, 128, 3, 3), dict(padding=1)),
    ("1x1 64-64 32x32", (64, 64, 32, 32), (64, 64, 1, 1), dict()),
    ("depthwise 3x3 64 32x32", (64, 64, 32, 32), (64, 1, 3, 3), dict(padding=1, groups=64)),
    ("stride-2 64-128 32x32", (64, 64, 32, 32), (128, 64, 3, 3), dict(padding=1, stride=2)),
]
CASES = [(t, layer, impl) for t in THREADS for layer in LAYERS for impl in ("ember", "torch", "im2col+numpy")]


def im2col_numpy(x, w, b, padding=0, stride=1, groups=1):
    """The explicit way: build the whole patch matrix, then one GEMM per image."""
    o, c, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # N C OH OW KH KW
    n, _, oh, ow = cols.shape[:4]
    patches = np.ascontiguousarray(cols.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow)
    y = np.matmul(w.reshape(o, -1), patches).reshape(n, o, oh, ow)
    return y + b[None, :, None, None]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1][0].replace(' ', '_')}-{c[2]}-{c[0]}t")
def bench_conv2d_forward(benchmark, case):
    threads, (name, x_shape, w_shape, kwargs), impl = case
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[torch]')")
    if impl == "im2col+numpy" and kwargs.get("groups", 1) != 1:
        pytest.skip("the explicit im2col reference covers groups=1 only")
    rng = np.random.default_rng()
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    result = {}
    if impl == "ember":
        def run():
            result["y"] = ops.conv2d(x, w, b, **kwargs)
    elif impl == "torch":
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

        def run():
            result["y"] = F.conv2d(tx, tw, tb, **kwargs).numpy()
    else:
        def run():
            result["y"] = im2col_numpy(x, w, b, **kwargs)

    benchmark.group = f"conv2d forward {name} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, layer=name)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    y = result["y"]
    flops = 2.0 * y.size * w_shape[1] * w_shape[2] * w_shape[3]
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gflops"] = flops / stats.stats.median * 1e-9
    # The timed result must be right: one image against the reference.
    want = ops.conv2d_ref(x[:1], w, b, **kwargs)
    k = w_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(y[:1], want, rtol=0, atol=(k + 4) * 2.0**-24 * 4 * (np.abs(want).max() + 1))
