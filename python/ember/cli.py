"""The ``ember`` command (also ``python -m ember``).

``ember``            the default job: the runtime report, then a GEMM comparison with NumPy
``ember info``       the runtime report (version, ISA, threads, CUDA)
``ember bench-gemm`` the GEMM comparison with NumPy on the default or given shapes
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np

DEFAULT_SHAPES = ["256x256x256", "1024x1024x1024", "65536x27x32", "64x7200x128", "1x4096x4096"]


def _parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    try:
        m, k, n = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}") from None
    if min(m, k, n) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}")
    return m, k, n


# Pause before each timing so that the previous library's spinning threads have gone idle.
_SETTLE_S = 0.3


def _median_time(fn, min_time: float = 0.2, max_runs: int = 200) -> float:
    """Median seconds per call over at least min_time (and at least 5 calls)."""
    fn()  # warm up: thread pool, packing buffers, page faults
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (time.perf_counter() - start < min_time or len(times) < 5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_gemm(shapes, out=sys.stdout) -> list[dict]:
    """Time ember's GEMM against NumPy's (OpenBLAS) matmul, interleaved, on each M x K x N shape."""
    from . import ops

    rng = np.random.default_rng(0)
    rows = []
    print(f"{'shape (MxKxN)':>18} {'ember ms':>10} {'numpy ms':>10} {'ember GFLOP/s':>14} {'speed-up':>9}", file=out)
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        # Alternate the two (A B A B A B): a neighbour's load then hits both alike. Each
        # timing starts after a pause: OpenBLAS's idle threads keep spinning for a while
        # after a call and would take the cores that the other library's threads need.
        run_ember = functools.partial(ops.gemm, a, b, out=c)
        run_numpy = functools.partial(np.matmul, a, b, out=c)
        ember_times, numpy_times = [], []
        for _ in range(3):
            time.sleep(_SETTLE_S)
            ember_times.append(_median_time(run_ember, min_time=0.1))
            time.sleep(_SETTLE_S)
            numpy_times.append(_median_time(run_numpy, min_time=0.1))
        t_ember, t_numpy = float(np.median(ember_times)), float(np.median(numpy_times))
        gflops = 2.0 * m * k * n / t_ember * 1e-9
        speedup = float(np.median(np.array(numpy_times) / np.array(ember_times)))
        row = {"shape": f"{m}x{k}x{n}", "ember_ms": t_ember * 1e3, "numpy_ms": t_numpy * 1e3,
               "gflops": gflops, "speedup": speedup}
        rows.append(row)
        print(f"{row['shape']:>18} {row['ember_ms']:>10.3f} {row['numpy_ms']:>10.3f} {gflops:>14.1f} "
              f"{row['speedup']:>8.2f}x", file=out)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ember", description="Ember: a lightweight deep-learning engine.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="print the runtime report")
    p_bench = sub.add_parser("bench-gemm", help="compare ember's GEMM with NumPy's")
    p_bench.add_argument("shapes", nargs="*", type=_parse_shape, metavar="MxKxN",
                         help=f"shapes to time (default: {' '.join(DEFAULT_SHAPES)})")
    args = parser.parse_args(argv)

    from . import info

    if args.command in (None, "info"):
        info()
    if args.command in (None, "bench-gemm"):
        shapes = getattr(args, "shapes", None) or [_parse_shape(s) for s in DEFAULT_SHAPES]
        if args.command is None:
            print()
        bench_gemm(shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
