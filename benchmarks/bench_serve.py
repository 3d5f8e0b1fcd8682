"""``ember serve`` under load: the digits CNN served by a separate process (``ember serve --port 0``),
64 concurrent aiohttp clients with and without dynamic batching, and one client's latency against
the model's own batch-1 latency, measured in the same run. Bodies are ``.npy`` bytes.

    python -m pytest benchmarks/bench_serve.py --benchmark-only -s --benchmark-json=serve.json

Run as a test (--benchmark-disable) it sends a few hundred requests only; every request must succeed.
"""

import asyncio
import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import ember
from ember import models

aiohttp = pytest.importorskip("aiohttp", reason="the load generator is aiohttp (pip install aiohttp)")
pytest.importorskip("uvicorn", reason="ember serve needs uvicorn (pip install 'ember[serve]')")

SHAPE = (1, 8, 8)


def start_server(path, *extra):
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "ember", "serve", str(path), "--port", "0", *extra],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if "running on" in line.lower():
            return proc, line.split("running on ")[1].split()[0]
    proc.kill()
    raise RuntimeError("ember serve did not start")


async def load(url, clients, requests_each, body):
    """(requests per second, p50 s, p99 s, failures) of ``clients`` concurrent clients."""
    latencies, failures = [], []

    async def client(http):
        for _ in range(requests_each):
            start = time.perf_counter()
            async with http.post(url + "/v1/predict", data=body, headers={"content-type": "application/x-npy"}) as r:
                await r.read()
                if r.status != 200:
                    failures.append(r.status)
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*[client(http) for _ in range(clients)])
        wall = time.perf_counter() - start
    return clients * requests_each / wall, np.percentile(latencies, 50), np.percentile(latencies, 99), failures


def bench_serve_dynamic_batching(benchmark, tmp_path):
    quick = getattr(benchmark, "disabled", False)
    ember.manual_seed(0)
    model = models.cnn(SHAPE, 10, padding=1).eval()
    path = tmp_path / "digits.safetensors"
    model.save(path, config={"input_shape": list(SHAPE)})
    x = np.zeros((1,) + SHAPE, np.float32)
    buf = io.BytesIO()
    np.save(buf, x)
    body = buf.getvalue()
    xt = ember.tensor(x)

    def model_call():
        with ember.no_grad():
            model(xt)

    timing = ember.bench.measure({"model": model_call}, rounds=5, min_time=0.05, settle=0.1)
    model_latency = timing["model"].median
    clients, each, single = (8, 10, 50) if quick else (64, 40, 500)
    rows = {}
    for label, extra in (("batching", []), ("no batching", ["--no-batching"])):
        proc, url = start_server(path, *extra)
        try:
            asyncio.run(load(url, 8, 10, body))  # warm up
            rows[label] = (asyncio.run(load(url, clients, each, body)), asyncio.run(load(url, 1, single, body)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for label, ((rate, p50, p99, failed), (_, one50, one99, failed1)) in rows.items():
        assert not failed and not failed1, (label, failed, failed1)
        print(f"\n{label}: {clients} clients {rate:.0f} requests/s (p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms); "
              f"1 client p50 {one50 * 1e3:.2f} ms, p99 {one99 * 1e3:.2f} ms")
    speedup = rows["batching"][0][0] / rows["no batching"][0][0]
    above = rows["batching"][1][2] - model_latency
    print(f"model batch-1 latency {model_latency * 1e3:.3f} ms; batching / no batching throughput {speedup:.2f}x; "
          f"1-client p99 {above * 1e3:.2f} ms above the model's latency")
    benchmark.extra_info.update(impl="ember serve", throughput_batching=rows["batching"][0][0],
                                throughput_no_batching=rows["no batching"][0][0], speedup=speedup,
                                p99_one_client_s=rows["batching"][1][2], model_batch1_s=model_latency)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
