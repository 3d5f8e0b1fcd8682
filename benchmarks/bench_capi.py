"""A model served from C (libember's ember_model_forward, called through ctypes, so the figure
includes a foreign call's cost) against the same checkpoint in Python (``ember.load_model``,
``no_grad``), batch 1, in alternating rounds in one process: the digits CNN (1x8x8) and the seed
CNN (3x32x32), 2 threads and 1. ``extra_info`` holds the medians and the median of the rounds'
ratios (C / Python; below 1 means C is faster); ``-s`` prints them.

    python -m pytest benchmarks/bench_capi.py --benchmark-only -s

As a test (``--benchmark-disable``) each case runs a few rounds and checks only the outputs.
"""

import ctypes
import statistics
import time

import numpy as np
import pytest

import ember
from ember import models
from ember.bench import machine
from helpers import THREADS, settle, thread_limit

MODELS = {"digits CNN": ((1, 8, 8), {"padding": 1}), "seed CNN": ((3, 32, 32), {})}


@pytest.fixture(scope="module")
def lib():
    c = ctypes.CDLL(ember.get_lib() + "/libember.so")
    c.ember_last_error.restype = ctypes.c_char_p
    return c


def best_of(fn, calls):
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
@pytest.mark.parametrize("name", sorted(MODELS))
def bench_model_forward_c_vs_python(benchmark, lib, tmp_path, name, threads):
    quick = getattr(benchmark, "disabled", False)
    shape, options = MODELS[name]
    ember.manual_seed(0)
    path = ember.save(tmp_path / "model.safetensors", models.cnn(shape, 10, **options).eval())
    model = ember.load_model(path)
    handle = ctypes.c_void_p()
    assert lib.ember_model_load(str(path).encode(), ctypes.byref(handle)) == 0, lib.ember_last_error()
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    y = np.empty((1, 10), np.float32)
    dims = (ctypes.c_int64 * 4)(*x.shape)
    xp, yp, size = ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data), ctypes.c_int64(10)
    xt = ember.tensor(x)

    def c_forward():
        if lib.ember_model_forward(handle, 4, dims, xp, yp, size) != 0:
            raise RuntimeError(lib.ember_last_error().decode())

    def python_forward():
        with ember.no_grad():
            return model(xt).numpy()

    rounds, calls = (3, 3) if quick else (15, 200)
    times = {"C": [], "Python": []}
    figures = {}

    def run():
        assert lib.ember_set_num_threads(threads) == 0
        with thread_limit(threads):
            for _ in range(rounds):
                for impl, fn in (("C", c_forward), ("Python", python_forward)):
                    fn()
                    settle(benchmark, 0.05)
                    times[impl].append(best_of(fn, calls))
        ratios = [c / p for c, p in zip(times["C"], times["Python"])]
        figures.update(c_us=1e6 * statistics.median(times["C"]), python_us=1e6 * statistics.median(times["Python"]),
                       ratio=statistics.median(ratios))
        print(f"\n{name} batch 1, {threads} thread(s): C {figures['c_us']:.1f} us, Python {figures['python_us']:.1f} "
              f"us, C / Python {figures['ratio']:.3f} (median of {rounds} rounds)")

    benchmark.group = f"C API model forward, {name}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, model=name, batch=1, cpu=machine.cpu_model())
    lib.ember_model_free(handle)
    np.testing.assert_array_equal(y, python_forward())
    if not quick:
        assert figures["ratio"] < 1.0, "the C path must be no slower than Python at batch 1"
