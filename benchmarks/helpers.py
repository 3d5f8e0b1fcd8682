"""Shared by the benchmark files: the thread limits and the pause of ``ember.bench``, and the
catalogue's cases timed by pytest-benchmark (``time_case``)."""

import os
import time

import pytest

import ember
from ember.bench import KERNELS, machine, thread_limit

# 2 threads (or as many as this process may use, if fewer) and 1.
THREADS = sorted({min(2, len(os.sched_getaffinity(0))), 1}, reverse=True)

__all__ = ["THREADS", "bench_read_bandwidth", "catalogue_cases", "settle", "thread_limit", "time_case"]


def settle(benchmark, seconds=0.25):
    """Pause before a timed case so that the previous case's library threads (OpenBLAS and
    OpenMP workers spin for up to ~0.1 s after a call) are idle and do not compete with it."""
    if not getattr(benchmark, "disabled", False):
        time.sleep(seconds)


def catalogue_cases(config, *kernels):
    """(threads, case, implementation) of the catalogue's kernels: the 'full' sizes when timing,
    the 'test' sizes when the benchmarks run as tests (--benchmark-disable)."""
    preset = "test" if config.getoption("benchmark_disable", False) else "full"
    return [(t, case, impl) for t in THREADS for case in ember.bench.cases(kernels, preset)
            for impl in KERNELS[case.kernel].impls]


def case_id(item):
    threads, case, impl = item
    return f"{case.shape.replace(' ', '_').replace(',', '')}-{impl.replace(' ', '-')}-{threads}t"


_prepared = {}


def time_case(benchmark, item):
    """Time one implementation of a catalogue case with pytest-benchmark, then check its result;
    ``extra_info`` carries what ``report.py`` turns into ``ember bench`` records."""
    threads, case, impl = item
    if case not in _prepared:  # one case's operands at a time, shared by its implementations
        _prepared.clear()
        _prepared[case] = case.setup()
    prepared = _prepared[case]
    if impl in prepared.skipped:
        pytest.skip(prepared.skipped[impl])
    if impl not in prepared.impls:
        pytest.skip(f"{impl} does not compute {case.kernel} {case.shape}")
    run = prepared.impls[impl]
    benchmark.group = f"{case.kernel} {case.shape} {threads}t"
    benchmark.extra_info.update(kernel=case.kernel, shape=case.shape, impl=impl, threads=threads, work=case.work,
                                unit=case.unit, precision=case.precision if impl == "ember" else
                                next((p for p in ("bf16", "int8", "int4") if p in impl), "fp32"))
    with thread_limit(threads):
        run()  # warm up: thread pools, packing buffers, page faults
        settle(benchmark)
        benchmark(run)
    prepared.check(impl)  # the timed result must be right


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_read_bandwidth(benchmark, threads):
    """The read bandwidth the memory-bound kernels are measured against (``ember bench``'s: a
    512 MiB buffer, past the caches). The files of memory-bound kernels import it, so that a run
    of any of them measures it."""
    benchmark.group = f"read bandwidth {threads}t"
    settle(benchmark)
    gbs = benchmark.pedantic(machine.read_bandwidth, args=(threads,), rounds=3, iterations=1)
    benchmark.extra_info.update(impl="bandwidth", threads=threads, gb_per_s=gbs)
    assert gbs > 0
