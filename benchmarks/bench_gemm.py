"""GEMM benchmarks: ember against NumPy (OpenBLAS) and PyTorch CPU (when installed) in one run.

The cases (shapes, references, the check of each timed result) are ``ember.bench``'s catalogue
(``ember bench gemm --full`` runs the same ones). Every shape is timed with 2 threads and with 1
(ember.set_num_threads, threadpoolctl for NumPy's BLAS, torch.set_num_threads), the
implementations of a shape adjacent in one pytest-benchmark group, so that one run gives their
ratio. The machine's FMA peak is measured in the same run so that a fraction of peak can be quoted.

    python -m pytest benchmarks/bench_gemm.py --benchmark-only --benchmark-json=gemm.json
    python benchmarks/report.py gemm.json

With --benchmark-disable (as CI runs it) each case runs once at the catalogue's test sizes and
only its result is checked.
"""

import pytest

from ember.bench import machine
from helpers import THREADS, time_case

CATALOGUE = {"bench_gemm": ("gemm",)}


def bench_gemm(benchmark, item):
    time_case(benchmark, item)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_fma_peak(benchmark, threads):
    """The fp32 FMA rate of a register-only loop: the ceiling GEMM is measured against."""
    benchmark.group = f"fma peak {threads}t"
    gflops = benchmark.pedantic(machine.fma_peak, args=(threads,), rounds=3, iterations=1)
    benchmark.extra_info.update(impl="peak", threads=threads, gflops=gflops)
    assert gflops > 0
