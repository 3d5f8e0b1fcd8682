"""The seed CNN's inference in Ember against the same model exported to ONNX and run in ONNX
Runtime (CPU execution provider, the same thread count), side by side in alternating rounds of
one run (ember.bench.measure): batch 1 (latency) and batch 64. ``extra_info`` holds both medians
and the median of the rounds' ratios (Ember / ONNX Runtime; below 1 means Ember is faster); ``-s``
prints them.

    python -m pytest benchmarks/bench_onnx.py --benchmark-only -s

As a test (``--benchmark-disable``) each case runs once and checks that the outputs agree.
"""

import numpy as np
import pytest

import ember
from ember import models
from ember.bench import machine
from helpers import THREADS, thread_limit

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'ember[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the comparison runs the export in onnxruntime")
import ember.onnx as ember_onnx  # noqa: E402


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
@pytest.mark.parametrize("batch", [1, 64], ids=lambda b: f"batch{b}")
def bench_seed_cnn_inference(benchmark, batch, threads, tmp_path):
    quick = getattr(benchmark, "disabled", False)
    ember.manual_seed(0)
    model = models.cnn((3, 32, 32), 10).eval()
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    xt = ember.tensor(x)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    path = ember_onnx.export(model, x, tmp_path / "seed.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def ember_run():
        with ember.no_grad():
            return model(xt).numpy()

    def ort_run():
        return session.run(None, {"input": x})[0]

    figures = {}

    def run():
        with thread_limit(threads):
            timings = ember.bench.measure({"ember": ember_run, "onnxruntime": ort_run}, rounds=1 if quick else 15,
                                          min_time=0 if quick else 0.1, min_calls=1 if quick else 20,
                                          settle=0 if quick else 0.2, warmup_time=0 if quick else 0.2)
        ratio = ember.bench.speedup(timings, "onnxruntime", "ember")[0]
        figures.update(ember_us=1e6 * timings["ember"].median, onnxruntime_us=1e6 * timings["onnxruntime"].median,
                       ratio=ratio)
        print(f"\nseed CNN batch {batch}, {threads} thread(s): Ember {figures['ember_us']:.1f} us, ONNX Runtime "
              f"{figures['onnxruntime_us']:.1f} us, Ember / ONNX Runtime {ratio:.3f} (median of the rounds' ratios)")

    benchmark.group = f"seed CNN inference batch {batch}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, batch=batch, cpu=machine.cpu_model())
    want = ember_run()
    np.testing.assert_allclose(ort_run(), want, rtol=0, atol=1e-5 * np.abs(want).max())
