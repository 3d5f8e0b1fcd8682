"""Softmax cross-entropy benchmarks, forward + backward: ember against PyTorch's F.cross_entropy
(+ .backward(), when installed) and an unfused NumPy composition, in one run, 2 threads and 1,
with this machine's read bandwidth measured alongside (a 512 MiB buffer, well past the L3).
``extra_info`` holds each case's effective GB/s for the bytes the fused kernel must move: the
logits read once forward and once backward, the gradient written once.

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
from helpers import THREADS, settle, thread_limit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None

SHAPES = [(64, 10), (4096, 1000), (2048, 32768), (8192, 50257)]
# Run as tests (benchmarks disabled), the shapes past this many logits are skipped: their
# arrays alone take gigabytes.
TEST_MAX_LOGITS = 1 << 26
CASES = [(t, shape, impl) for t in THREADS for shape in SHAPES for impl in ("ember", "torch", "numpy")]


def numpy_xent(z, t):
    """The unfused way: log-softmax materialised, then the loss, then softmax minus one-hot."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    logp = z - m - np.log(s)
    loss = -logp[np.arange(z.shape[0]), t].mean()
    dz = e / s
    dz[np.arange(z.shape[0]), t] -= 1.0
    dz /= z.shape[0]
    return loss, dz


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_read_bandwidth(benchmark, threads):
    """The read bandwidth the memory-bound kernels are measured against."""
    buf = np.ones(1 << 27, np.float32)
    benchmark.group = f"read bandwidth {threads}t"
    gbs = benchmark.pedantic(ember._C.measure_read_bandwidth, args=(buf, 2, threads), rounds=3, iterations=1)
    benchmark.extra_info.update(impl="bandwidth", threads=threads, gb_per_s=gbs)
    assert gbs > 0


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1][0]}x{c[1][1]}-{c[2]}-{c[0]}t")
def bench_cross_entropy_forward_backward(benchmark, case):
    threads, (b, v), impl = case
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    if getattr(benchmark, "disabled", False) and b * v > TEST_MAX_LOGITS:
        pytest.skip("too large to run as a test; run with --benchmark-only")
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((b, v), dtype=np.float32) * 2).astype(np.float32)
    t = rng.integers(0, v, b)
    result = {}
    if impl == "ember":
        dz = np.empty_like(z)

        def run():
            loss, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True)
            result["loss"], result["dz"] = loss, kernels.cross_entropy.cross_entropy_bwd(z, t, lse, out=dz)
    elif impl == "torch":
        tz, tt = torch.from_numpy(z), torch.from_numpy(t)

        def run():
            x = tz.detach().requires_grad_()
            loss = F.cross_entropy(x, tt)
            loss.backward()
            result["loss"], result["dz"] = loss.item(), x.grad.numpy()
    else:
        def run():
            result["loss"], result["dz"] = numpy_xent(z, t)

    benchmark.group = f"cross_entropy forward+backward {b}x{v} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, logits=f"{b}x{v}", logits_bytes=z.nbytes)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gb_per_s"] = 3 * z.nbytes / stats.stats.median * 1e-9
    # The timed result must be right: the loss, and the gradient of a few rows, against the reference.
    rows = np.arange(min(b, 4))
    want, lse = kernels.cross_entropy.cross_entropy_fwd_ref(z, t, return_lse=True)
    np.testing.assert_allclose(result["loss"], want, rtol=1e-5)
    want_dz = kernels.cross_entropy.cross_entropy_bwd_ref(z[rows], t[rows], lse[rows], 1.0 / b, reduction="sum")
    np.testing.assert_allclose(result["dz"][rows], want_dz, rtol=1e-4, atol=1e-6 / b)


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


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def report_peak(impl, b, d, v, threads):
    """(In the fresh process.) Prints the MiB one call adds to the resident set at its peak."""
    ember.set_num_threads(int(threads))
    call = linear_call(impl, *linear_problem(int(b), int(d), int(v)))
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the high-water mark VmHWM to the resident set now
    call()
    print((_status_kib("VmHWM") - before) / 1024)


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
