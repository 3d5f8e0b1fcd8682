"""Quantized matmul against PyTorch's dynamic int8 Linear (fbgemm, ``quantize_dynamic``), Ember's
fp32 GEMM and NumPy/OpenBLAS fp32, in the same run, 2 threads and 1: batch 64 and batch 1 at
4096 x 4096, and a matrix-vector product whose weights exceed the 32 MiB L3 (1 x 8192 x 8192),
with the machine's read bandwidth for a buffer of that size measured in the same run.
``extra_info`` holds the GB/s each case reads (weights and scales) for the bandwidth table.

    python -m pytest benchmarks/bench_qmatmul.py --benchmark-only --benchmark-json=q.json
    python benchmarks/report.py q.json
"""

import warnings

import numpy as np
import pytest

import ember
from ember import quant
from helpers import THREADS, settle, thread_limit

try:
    import torch
except ImportError:  # optional reference
    torch = None

SHAPES = [(64, 4096, 4096), (1, 4096, 4096), (1, 8192, 8192)]
IMPLS = ["int8", "int4", "ember fp32", "numpy fp32", "torch int8"]
CASES = [(t, s, impl) for t in THREADS for s in SHAPES for impl in IMPLS]
SMALL = (3, 256, 96)  # what runs when benchmarks run as tests


def case_id(c):
    t, (m, k, n), impl = c
    return f"{impl.replace(' ', '-')}-{m}x{k}x{n}-{t}t"


def make(shape):
    m, k, n = shape
    rng = np.random.default_rng(0)
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)


def runner(impl, x, w):
    """(function to time, bytes of weights it reads, a function returning the result it
    computed, and the exact result it must equal, if any)."""
    out = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)  # poisoned: the timed call must write it
    if impl in ("int8", "int4"):
        qw = quant.quantize_weight(w, 8 if impl == "int8" else 4, 32)
        # The integer kernels give the int64 reference's bits exactly.
        return (lambda: qw.matmul(x, out=out)), qw.nbytes, (lambda: out), qw.matmul(x, reference=True)
    if impl == "ember fp32":
        return (lambda: ember.kernels.gemm.gemm(x, w, trans_b=True, out=out)), w.nbytes, (lambda: out), None
    if impl == "numpy fp32":
        return (lambda: np.matmul(x, w.T, out=out)), w.nbytes, (lambda: out), None
    if torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    with warnings.catch_warnings():  # PyTorch announces the deprecation of its eager quantization
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    xt = torch.from_numpy(x)
    result = {}

    def run():
        with torch.no_grad():
            result["y"] = q(xt)

    run()
    # int8 weights (its scales are per tensor or channel: negligible)
    return run, w.nbytes // 4, (lambda: result["y"].numpy()), None


@pytest.mark.parametrize("case", CASES, ids=case_id)
def bench_qmatmul(benchmark, case):
    threads, shape, impl = case
    if getattr(benchmark, "disabled", False):
        shape = SMALL
    m, k, n = shape
    x, w = make(shape)
    run, nbytes, result, exact_bits = runner(impl, x, w)
    benchmark.group = f"qmatmul {m}x{k}x{n} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads)
    with thread_limit(threads):
        run()
        settle(benchmark)
        benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gb_per_s"] = nbytes / stats.stats.median / 1e9
    # The timed result must be right: the product to quantization error (float32 rounding for
    # the float GEMMs), and for Ember's integer kernels exactly the reference's bits.
    got = result()
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    if impl in ("ember fp32", "numpy fp32"):
        bound = (k + 4) * 2.0**-24 * (np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64))
        assert (np.abs(got - exact) <= bound).all(), impl
    else:
        nmse = np.mean((got - exact) ** 2) / np.mean(exact**2)
        assert nmse < (3e-2 if impl == "int4" else 1e-3), (impl, nmse)
    if exact_bits is not None:
        np.testing.assert_array_equal(got, exact_bits)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_qmatmul_read_bandwidth(benchmark, threads):
    """The machine's read bandwidth for a buffer the size of the largest weights (int8 8192x8192,
    beyond the L3), the ceiling for the matrix-vector cases."""
    nbytes = (256 << 10) if getattr(benchmark, "disabled", False) else 8192 * 8192
    buf = np.ones(nbytes // 4, np.float32)
    benchmark.group = f"qmatmul 1x8192x8192 {threads}t"
    benchmark.extra_info.update(impl="read bandwidth", threads=threads)
    settle(benchmark)
    result = {}
    benchmark(lambda: result.setdefault("gb", []).append(ember._C.measure_read_bandwidth(buf, 1, threads)))
    benchmark.extra_info["gb_per_s"] = float(np.median(result["gb"]))
    assert all(np.isfinite(g) and g > 0 for g in result["gb"]), result["gb"]
