"""The seed CNN's inference in Ember against the same model exported to ONNX and run in ONNX
Runtime (CPU execution provider, the same thread count), side by side in one run: batch 1
(latency) and batch 64.

    python -m pytest benchmarks/bench_onnx.py --benchmark-only --benchmark-json=onnx.json
    python benchmarks/report.py onnx.json
"""

import numpy as np
import pytest

import ember
from ember import models
from helpers import THREADS, settle, thread_limit

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'ember[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the comparison runs the export in onnxruntime")
import ember.onnx as ember_onnx  # noqa: E402

CASES = [(t, b, impl) for t in THREADS for b in (1, 64) for impl in ("ember", "onnxruntime")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"batch{c[1]}-{c[2]}-{c[0]}t")
def bench_seed_cnn_inference(benchmark, case, tmp_path):
    threads, batch, impl = case
    ember.manual_seed(0)
    model = models.cnn((3, 32, 32), 10).eval()
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with ember.no_grad():
        want = model(ember.tensor(x)).numpy()
    if impl == "ember":
        xt = ember.tensor(x)

        def run():
            with ember.no_grad():
                return model(xt).numpy()
    else:
        path = ember_onnx.export(model, x, tmp_path / "seed.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run():
            return session.run(None, {"input": x})[0]
    benchmark.group = f"seed CNN inference batch {batch} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, batch=batch)
    with thread_limit(threads):
        run()
        settle(benchmark)
        got = benchmark(run)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
