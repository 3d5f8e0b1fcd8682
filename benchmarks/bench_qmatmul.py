"""Quantized matmul against PyTorch's dynamic int8 Linear (fbgemm, ``quantize_dynamic``), Ember's
fp32 GEMM and NumPy/OpenBLAS fp32, in the same run, 2 threads and 1: batch 64 and batch 1 at
4096 x 4096, and a matrix-vector product of 1 x 8192 x 8192 (``ember.bench``'s catalogue:
``ember bench qmatmul_int8 qmatmul_int8g qmatmul_int4 qmatmul_int4cb --full``; int8 in groups of
32 beside int8 per channel, and the int4 codebook format beside int4 in groups of 32, at
1 x 4096 x 14336 too), with the machine's read bandwidth measured
in the same run. Each case's work is the bytes of its packed weights and scales.

    python -m pytest benchmarks/bench_qmatmul.py --benchmark-only --benchmark-json=q.json
    python benchmarks/report.py q.json
"""

from helpers import bench_read_bandwidth, time_case  # noqa: F401 (pytest collects bench_read_bandwidth here too)

CATALOGUE = {"bench_qmatmul": ("qmatmul_int8", "qmatmul_int8g", "qmatmul_int4", "qmatmul_int4cb")}


def bench_qmatmul(benchmark, item):
    time_case(benchmark, item)
