"""Pooling benchmarks: ember against PyTorch CPU (when installed) and NumPy, in one run.

Max pooling 2x2 / stride 2 on the activation of a 32-channel conv layer (64 x 32 x 30 x 30):
the forward with argmax indices, and forward + backward, as a training step runs them.
2 threads and 1; GB/s of the input read in ``extra_info``.

    python -m pytest benchmarks/bench_pool2d.py --benchmark-only --benchmark-json=pool.json
"""

import numpy as np
import pytest

from ember import kernels
from helpers import THREADS, settle, thread_limit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None

SHAPE = (64, 32, 30, 30)
CASES = [(t, step, impl) for t in THREADS for step in ("forward", "forward+backward")
         for impl in ("ember", "torch", "numpy") if not (step == "forward+backward" and impl == "numpy")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[0]}t")
def bench_max_pool2d(benchmark, case):
    threads, step, impl = case
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    rng = np.random.default_rng()
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    want, want_idx = kernels.pool2d.max_pool2d_fwd_ref(x, 2)
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    result = {}
    if impl == "ember":
        def run():
            y, idx = kernels.pool2d.max_pool2d_fwd(x, 2, return_indices=True)
            result["y"] = y
            if step == "forward+backward":
                result["dx"] = kernels.pool2d.max_pool2d_bwd(dy, idx, x.shape)
    elif impl == "numpy":
        def run():
            result["y"] = x.reshape(64, 32, 15, 2, 15, 2).max(axis=(3, 5))
    else:
        tx = torch.from_numpy(x)
        tdy = torch.from_numpy(dy)

        def run():
            if step == "forward":
                result["y"] = F.max_pool2d(tx, 2, return_indices=True)[0].numpy()
            else:
                xr = tx.detach().requires_grad_()
                y = F.max_pool2d(xr, 2)
                y.backward(tdy)
                result["y"], result["dx"] = y.detach().numpy(), xr.grad.numpy()

    benchmark.group = f"max_pool2d 2x2 {step} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, step=step)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["input_gb_per_s"] = x.nbytes / stats.stats.median * 1e-9
    np.testing.assert_array_equal(result["y"], want)
    if "dx" in result:
        np.testing.assert_allclose(result["dx"], kernels.pool2d.max_pool2d_bwd_ref(dy, want_idx, x.shape), rtol=1e-6)
