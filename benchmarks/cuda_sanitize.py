"""Calls every ember._cuda kernel once on small, awkward shapes: the workload that
benchmarks/gpu_check.sh runs under compute-sanitizer (memcheck for out-of-bounds and
misaligned accesses; racecheck for the shared-memory kernels with --smem-only).

    compute-sanitizer --tool memcheck python3 benchmarks/cuda_sanitize.py
    compute-sanitizer --tool racecheck python3 benchmarks/cuda_sanitize.py --smem-only

Results are not checked here (the tests do that); every call is followed by a synchronisation
so that an error is attributed to the kernel that caused it.
"""

import sys

import cupy as cp
import numpy as np

from ember import _cuda as K


def sync(what):
    cp.cuda.get_current_stream().synchronize()
    print(f"ok {what}", flush=True)


def bf16(shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    return cp.asarray((x.view(np.uint32) >> 16).astype(np.uint16))


def gemm_cases(rng):
    f = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    for (m, n, k) in [(1, 1, 1), (37, 45, 29), (129, 130, 17)]:
        for ta in (False, True):
            for tb in (False, True):
                a = f(k, m) if ta else f(m, k)
                b = f(n, k) if tb else f(k, n)
                K.gemm(a, b, cp.empty((m, n), cp.float32), 1.0, 0.0, ta, tb, f(n), True, "simt")
    sync("gemm simt fp32")
    for (m, n, k) in [(1, 8, 8), (37, 45, 24), (129, 257, 72)]:
        for ta in (False, True):
            for tb in (False, True):
                a = bf16((k, m + (-m) % 8), rng)[:, :m] if ta else bf16((m, k), rng)
                b = bf16((n, k), rng) if tb else bf16((k, n + (-n) % 8), rng)[:, :n]
                K.gemm(a, b, cp.empty((m, n), cp.float32), 1.0, 0.0, ta, tb, None, False, "mma")
                K.gemm(a, b, cp.empty((m, n), cp.float32), 1.0, 0.0, ta, tb, None, False, "simt")
    sync("gemm bf16 mma/simt")


def wgmma_cases(rng):
    if cp.cuda.Device().compute_capability != "90":
        return
    for (m, n, k) in [(1, 8, 8), (37, 45, 24), (129, 257, 72), (256, 512, 320)]:
        a, b = bf16((m, k), rng), bf16((n, k), rng)
        K.gemm(a, b, cp.empty((m, n), cp.uint16), 1.0, 0.0, False, True, None, False, "wgmma")
    sync("gemm bf16 wgmma")


def main():
    smem_only = "--smem-only" in sys.argv
    rng = np.random.default_rng(0)
    f = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    gemm_cases(rng)
    # cross-entropy: a warp per row, 256 and 512 threads per row (block reductions in shared memory)
    for v in (7, 1500, 9001):
        z = f(5, v)
        t = cp.asarray(np.array([0, v - 1, -100, 3 % v, v], np.int64))
        lse, nll, sm = (cp.empty(5, cp.float64) for _ in range(3))
        err = cp.full(1, 2**31 - 1, cp.int32)
        K.cross_entropy_fwd(z, t, f(v), 0.1, -100, lse, nll, sm, err)
        K.cross_entropy_bwd(z, t, f(v), 0.1, -100, cp.zeros(5), cp.ones(5, cp.float32), z, err)
        soft = cp.abs(f(5, v))
        K.cross_entropy_fwd(z, soft, None, 0.0, -100, lse, nll, sm)
        K.cross_entropy_bwd(z, soft, None, 0.0, -100, cp.zeros(5), cp.ones(5, cp.float32), cp.empty((5, v), cp.float32))
    sync("cross_entropy")
    # pooling (max backward uses shared memory for small planes)
    x = f(2, 3, 9, 11)
    y, idx = cp.empty((2, 3, 4, 5), cp.float32), cp.empty((2, 3, 4, 5), cp.int64)
    K.max_pool2d_fwd(x, y, idx, 3, 3, 2, 2, 1, 1, 1, 1)
    K.max_pool2d_bwd(f(2, 3, 4, 5), idx, cp.empty_like(x))
    big = f(1, 1, 130, 129)
    y2, i2 = cp.empty((1, 1, 65, 64), cp.float32), cp.empty((1, 1, 65, 64), cp.int64)
    K.max_pool2d_fwd(big, y2, i2, 2, 2, 2, 2, 0, 0, 1, 1)
    K.max_pool2d_bwd(y2, i2, cp.empty_like(big))
    if not smem_only:
        K.avg_pool2d_fwd(x, y, 3, 3, 2, 2, 1, 1, False)
        K.avg_pool2d_bwd(y, cp.empty_like(x), 3, 3, 2, 2, 1, 1, True)
        K.adaptive_avg_pool2d_fwd(x, cp.empty((2, 3, 4, 3), cp.float32))
        K.adaptive_avg_pool2d_bwd(f(2, 3, 4, 3), cp.empty_like(x))
    sync("pooling")
    # conv2d: implicit GEMMs on the shared-memory SIMT kernel; backward-weight with a K split
    for (n, c, h, w, o, kk, s, p, d, g) in [(2, 4, 9, 7, 6, 3, 2, 1, 1, 2), (2, 6, 11, 13, 6, 3, 1, 2, 2, 6),
                                             (64, 3, 32, 32, 32, 3, 1, 0, 1, 1)]:
        oh = (h + 2 * p - d * (kk - 1) - 1) // s + 1
        ow = (w + 2 * p - d * (kk - 1) - 1) // s + 1
        xx, ww, dy = f(n, c, h, w), f(o, c // g, kk, kk), f(n, o, oh, ow)
        K.conv2d_fwd(xx, ww, f(o), cp.empty((n, o, oh, ow), cp.float32), s, s, p, p, d, d, g, True)
        K.conv2d_bwd_data(dy, ww, cp.empty_like(xx), s, s, p, p, d, d, g)
        K.conv2d_bwd_weight(xx, dy, cp.empty_like(ww), cp.empty(o, cp.float32), s, s, p, p, d, d, g)
    sync("conv2d")
    if not smem_only:
        sizes = [1, 5, 16387, 1000]
        P = [f(n) for n in sizes]
        K.adam_step(P, [f(n) for n in sizes], [f(n) for n in sizes], [cp.abs(f(n)) for n in sizes],
                    [cp.abs(f(n)) for n in sizes], [1, 2, 3, 4], 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False)
        K.sgd_step(P, [f(n) for n in sizes], [f(n) for n in sizes], 0.1, 0.9, 0.0, 0.0, True, False, False)
        xs = f(1001)
        K.relu_fwd(xs, xs)
        K.relu_bwd(f(1001), xs, cp.empty(1001, cp.float32))
        K.relu_fwd(xs[1:], cp.empty(1000, cp.float32))
        sync("optimizers, relu")
    if not smem_only:  # TMA and wgmma read shared memory through the async proxy, which racecheck does not model
        wgmma_cases(rng)  # last: a fault there would end the process
    print("cuda_sanitize: all kernels ran", flush=True)


if __name__ == "__main__":
    main()
