"""Ember's side of compare.sh: each int4 and int8 format's relative error on W (14336 x 4096
float32) and of the product with x, and the median time of back-to-back matrix-vector products,
2 threads: the kernel called from Python directly (as mvbench times ggml's graph) and through
QuantizedWeight.matmul (its argument checks add some 25 us)."""

import os
import sys
import time

# NumPy's reference products below must not leave OpenBLAS threads spinning on the cores the
# timed kernels use.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import ember
from ember import _C, quant

w = np.fromfile(sys.argv[1], np.float32).reshape(14336, 4096)
x = np.fromfile(sys.argv[2], np.float32)[None]
exact = w.astype(np.float64) @ x[0].astype(np.float64)
ember.set_num_threads(2)
y = np.empty((1, 14336), np.float32)


def median_us(call, calls=300):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.median(times) * 1e6


cb, g32 = quant.quantize_weight(w, 4, codebook=True), quant.quantize_weight(w, 4, 32)
i8, i8g = quant.quantize_weight(w, 8), quant.quantize_weight(w, 8, 32)
kernels = {"int4 codebook": lambda: _C.qmatmul_int4cb(x, cb.data, cb.scales, 14336, 4096, None, y),
           "int4 groups of 32": lambda: _C.qmatmul_int4(x, g32.data, g32.scales, 14336, 4096, 32, None, y),
           "int8 per channel": lambda: _C.qmatmul_int8(x, i8.data, i8.scales, i8.colsum, 14336, 4096, None, y),
           "int8 groups of 32": lambda: _C.qmatmul_int8g(x, i8g.data, i8g.scales, 14336, 4096, 32, None, y)}
for (name, kernel), q in zip(kernels.items(), (cb, g32, i8, i8g)):
    err = np.linalg.norm(q.dequantize() - w) / np.linalg.norm(w)
    err_y = np.linalg.norm(q.matmul(x)[0] - exact) / np.linalg.norm(exact)
    print(f"{name:18s} {q.nbytes * 8 / w.size:.2f} bits  error {err:.4e}  product error {err_y:.4e}  "
          f"kernel {median_us(kernel):.0f} us  matmul {median_us(lambda: q.matmul(x, out=y)):.0f} us")
