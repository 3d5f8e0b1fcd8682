"""GEMM benchmarks: ember against NumPy (OpenBLAS) and PyTorch CPU (when installed) in one run.

Every shape is timed with 2 threads and with 1 (ember.set_num_threads, threadpoolctl for
NumPy's BLAS, torch.set_num_threads), with the implementations of a shape adjacent in one
pytest-benchmark group so that one run gives their ratio. The machine's FMA peak is measured
in the same run so that a fraction of peak can be quoted.

    python -m pytest benchmarks/bench_gemm.py --benchmark-only --benchmark-json=gemm.json
    python benchmarks/report.py gemm.json

With --benchmark-disable (as CI runs it) each case runs once and only its result is checked.
"""

import numpy as np
import pytest

import ember

from helpers import THREADS, settle, thread_limit

try:
    import torch
except ImportError:  # optional reference
    torch = None

SHAPES = [
    (64, 64, 64), (128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024),
    (2048, 2048, 2048), (1000, 999, 1001), (1021, 1021, 1021),
    (65536, 27, 32),  # im2col of a 3->32 channel 3x3 convolution, batch 64 of 32x32
    (64, 7200, 128),  # a dense layer
    (1, 4096, 4096), (8, 4096, 4096),  # matrix-vector and small batch
]
IMPLS = ["ember", "numpy", "torch"]

CASES = [(t, s, i) for t in THREADS for s in SHAPES for i in IMPLS]


def case_id(case):
    t, (m, k, n), impl = case
    return f"{m}x{k}x{n}-{impl}-{t}t"


_operands = {}


def operands(m, k, n):
    """Fresh random A and B for a shape, shared by every implementation timed on it: a
    memory-bound case then compares the same pages (huge or not), not two allocations."""
    if (m, k, n) not in _operands:
        _operands.clear()  # one shape's operands at a time
        rng = np.random.default_rng()
        _operands[(m, k, n)] = (rng.standard_normal((m, k), dtype=np.float32),
                                rng.standard_normal((k, n), dtype=np.float32))
    return _operands[(m, k, n)]


def record(benchmark, flops):
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gflops"] = flops / stats.stats.median * 1e-9
    benchmark.extra_info["flops"] = flops


@pytest.mark.parametrize("case", CASES, ids=case_id)
def bench_gemm(benchmark, case):
    threads, (m, k, n), impl = case
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    rng = np.random.default_rng()
    a, b = operands(m, k, n)
    c = np.full((m, n), np.nan, dtype=np.float32)
    if impl == "ember":
        def run():
            ember.kernels.gemm.gemm(a, b, out=c)
    elif impl == "numpy":
        def run():
            np.matmul(a, b, out=c)
    else:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)

        def run():
            torch.matmul(ta, tb, out=tc)

    benchmark.group = f"gemm {m}x{k}x{n} {threads}t"
    benchmark.extra_info.update(shape=f"{m}x{k}x{n}", impl=impl, threads=threads)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    record(benchmark, 2.0 * m * k * n)

    # The timed result must be right: check a sample of rows against float64.
    rows = rng.choice(m, size=min(m, 8), replace=False)
    want = a[rows].astype(np.float64) @ b.astype(np.float64)
    tol = (k + 4) * 2.0**-24 * (np.abs(a[rows]).astype(np.float64) @ np.abs(b).astype(np.float64))
    assert (np.abs(c[rows] - want) <= tol).all()


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_fma_peak(benchmark, threads):
    """The fp32 FMA rate of a register-only loop: the ceiling GEMM is measured against."""
    benchmark.group = f"fma peak {threads}t"
    gflops = benchmark.pedantic(ember._C.measure_fma_peak, args=(0.1, threads), rounds=3, iterations=1)
    benchmark.extra_info.update(impl="peak", threads=threads, gflops=gflops)
    assert gflops > 0
