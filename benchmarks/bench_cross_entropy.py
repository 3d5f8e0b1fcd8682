"""Softmax cross-entropy benchmarks, forward + backward: ember against PyTorch's F.cross_entropy
(+ .backward(), when installed) and an unfused NumPy composition, in one run, 2 threads and 1,
with this machine's read bandwidth measured alongside (a 512 MiB buffer, well past the L3).
Each case's work is the bytes the fused kernel must move: the logits read once forward and
once backward, the gradient written once. And the fused linear + cross-entropy against the
unfused composition, with the memory each adds at its peak.

    python -m pytest benchmarks/bench_cross_entropy.py --benchmark-only --benchmark-json=xent.json
    python benchmarks/report.py xent.json
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember import kernels
from helpers import THREADS, bench_read_bandwidth, settle, thread_limit, time_case  # noqa: F401 (collected here)

CATALOGUE = {"bench_cross_entropy_forward_backward": ("cross_entropy",)}


def bench_cross_entropy_forward_backward(benchmark, item):
    """Mean cross-entropy forward and backward (``ember.bench``'s catalogue: the logits read
    once forward and once backward, the gradient written once)."""
    time_case(benchmark, item)


# Fused linear + cross-entropy: batch x features x classes (a smaller shape when run as a test).
LINEAR = (4096, 1024, 32768)
LINEAR_TEST = (256, 64, 2048)


def unfused_linear_xent(h, w, t, bias):
    """Logits, loss, dlogits and the three gradient products, each materialised."""
    z = kernels.gemm.gemm(h, w, trans_b=True, bias=bias)
    loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True)
    dz = kernels.cross_entropy.cross_entropy_bwd(z, t, lse)
    return loss, kernels.gemm.gemm(dz, w), kernels.gemm.gemm(dz, h, trans_a=True), dz.sum(axis=0)


def numpy_linear_xent(h, w, t, bias, dtype, rows=256):
    """The loss and the three gradients of mean cross-entropy over h @ wᵀ + bias, in NumPy (no
    Ember kernel), in blocks of rows; logits in `dtype` (float64 for a test's small problem,
    float32 BLAS for the benchmark's), the softmax in float64."""
    b = h.shape[0]
    w_ = w.astype(dtype)
    loss, dh, dw, db = 0.0, np.empty(h.shape), np.zeros(w.shape), np.zeros(w.shape[0])
    for r0 in range(0, b, rows):
        hb = h[r0:r0 + rows].astype(dtype)
        z = (hb @ w_.T).astype(np.float64) + bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        s = p.sum(axis=1, keepdims=True)
        idx = np.arange(len(hb)), t[r0:r0 + rows]
        loss += float(np.sum(np.log(s[:, 0]) - z[idx]))
        dz = p / s
        dz[idx] -= 1.0
        dz /= b
        dh[r0:r0 + rows] = dz.astype(dtype) @ w_
        dw += (dz.T.astype(dtype) @ hb).astype(np.float64)
        db += dz.sum(axis=0)
    return loss / b, dh, dw, db


def linear_problem(b, d, v):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((b, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    w /= np.float32(np.sqrt(d))
    return h, w, rng.integers(0, v, b), np.zeros(v, np.float32)


def linear_call(impl, h, w, t, bias):
    if impl == "ember":
        return lambda: kernels.cross_entropy.linear_cross_entropy(h, w, t, bias)
    return lambda: unfused_linear_xent(h, w, t, bias)


def peak_mib(impl, problem, threads):
    """The memory one call adds at its peak, every allocation counted (NumPy's, Ember's host
    cache, the kernels' own): in a fresh process whose inputs exist, the resident-set high-water
    mark (reset just before the call) less the resident set before it."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import bench_cross_entropy as b; b.report_peak(*sys.argv[2:])"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), impl, *map(str, problem),
                          str(threads)], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.split()[-1])


def report_peak(impl, b, d, v, threads):
    """(In the fresh process.) Prints the MiB one call adds to the resident set at its peak."""
    ember.set_num_threads(int(threads))
    call = linear_call(impl, *linear_problem(int(b), int(d), int(v)))
    _, added = ember.bench.peak_rss(call)
    print(added / 2**20)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
@pytest.mark.parametrize("impl", ["ember", "unfused"])
def bench_linear_cross_entropy(benchmark, impl, threads):
    problem = LINEAR_TEST if getattr(benchmark, "disabled", False) else LINEAR
    b, d, v = problem
    h, w, t, bias = linear_problem(b, d, v)
    fn = linear_call(impl, h, w, t, bias)
    result = {}

    def run():
        result["out"] = fn()

    benchmark.group = f"linear+cross-entropy {b}x{d}x{v} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, problem=f"{b}x{d}x{v}")
    with thread_limit(threads):
        settle(benchmark)
        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["peak_mib"] = peak_mib(impl, problem, threads)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gflops"] = 6.0 * b * d * v / stats.stats.median * 1e-9
    # The timed results must be right, against NumPy's computation of the same (either path).
    loss, dh, dw, db = result["out"]
    want = numpy_linear_xent(h, w, t, bias, np.float64 if b * v <= (1 << 22) else np.float32)
    np.testing.assert_allclose(loss, want[0], rtol=1e-5)
    for name, got, ref in zip(("d_hidden", "d_weight", "d_bias"), (dh, dw, db), want[1:]):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), err_msg=name)
