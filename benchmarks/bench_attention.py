"""Fused scaled-dot-product attention, forward + backward, against PyTorch CPU's
``scaled_dot_product_attention`` (its fused flash-attention kernel) in alternating rounds of one
run (ember.bench.measure): B=8, H=8, T=1024, head size 64, causal, float32, 2 threads and 1.
``extra_info`` holds both medians, the median of the rounds' ratios (PyTorch / Ember; above 1
means Ember is faster), Ember's GFLOP/s and the peak resident memory each adds while running
in a fresh process (against the 256 MiB the T x T scores of every head would take); ``-s``
prints them.

    python -m pytest benchmarks/bench_attention.py --benchmark-only -s

As a test (``--benchmark-disable``) a small case runs once and is checked against PyTorch.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.bench import machine
from ember.kernels import attention
from helpers import THREADS, thread_limit

torch = pytest.importorskip("torch", reason="the comparison runs PyTorch's scaled_dot_product_attention")


PEAK = """
import sys, numpy as np
impl, b, h, t, d = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
q, k, v, g = (rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(4))
if impl == "ember":
    from ember.kernels import attention
    def run():
        out, lse = attention.attention_fwd(q, k, v, scale=d ** -0.5, is_causal=True)
        attention.attention_bwd(q, k, v, out, g, lse, scale=d ** -0.5, is_causal=True)
else:
    import torch
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    def run():
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(torch.tensor(g))
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
before = status("VmRSS:")
run()
print(status("VmHWM:") - before)
"""


def resident_peak_added(impl, shape):
    """Bytes of resident memory one forward + backward of ``impl`` adds at its peak, measured in a
    fresh process (Linux's VmHWM against the resident size once the inputs exist); None where
    /proc cannot tell."""
    if not os.path.exists("/proc/self/status"):
        return None
    result = subprocess.run([sys.executable, "-c", PEAK, impl, *map(str, shape)], capture_output=True, text=True,
                            check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_attention_forward_backward(benchmark, threads):
    quick = getattr(benchmark, "disabled", False)
    b, h, t, d = (2, 2, 130, 16) if quick else (8, 8, 1024, 64)
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(4))
    scale = 1 / np.sqrt(d)

    def ember_run():
        out, lse = attention.attention_fwd(q, k, v, scale=scale, is_causal=True)
        return (out, *attention.attention_bwd(q, k, v, out, g, lse, scale=scale, is_causal=True))

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tg = torch.tensor(g)

    def torch_run():
        for x in (tq, tk, tv):
            x.grad = None
        out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        out.backward(tg)
        return out.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()

    figures = {}

    def run():
        with thread_limit(threads):
            timings = ember.bench.measure({"ember": ember_run, "torch": torch_run}, rounds=1 if quick else 7,
                                          min_time=0 if quick else 0.5, min_calls=1 if quick else 3,
                                          settle=0 if quick else 0.3)
        peaks = {} if quick else {impl: resident_peak_added(impl, (b, h, t, d)) for impl in ("ember", "torch")}
        ratio = ember.bench.speedup(timings, "ember", "torch")[0]
        flops = 2 * 2 * b * h * t * t * d / 2 * 3.5  # causal: half the scores; forward 2 products, backward 5
        figures.update(ember_ms=1e3 * timings["ember"].median, torch_ms=1e3 * timings["torch"].median, ratio=ratio,
                       ember_gflops=flops / timings["ember"].median / 1e9,
                       **{f"{impl}_peak_mib": peak / 2**20 for impl, peak in peaks.items() if peak is not None})
        print(f"\nattention fwd+bwd B={b} H={h} T={t} d={d} causal, {threads} thread(s): Ember "
              f"{figures['ember_ms']:.1f} ms ({figures['ember_gflops']:.0f} GFLOP/s), PyTorch {figures['torch_ms']:.1f} "
              f"ms, PyTorch / Ember {ratio:.2f}; peak memory added (MiB, fresh process): Ember "
              f"{figures.get('ember_peak_mib', float('nan')):.0f}, PyTorch {figures.get('torch_peak_mib', float('nan')):.0f} "
              f"(the inputs: {4 * b * h * t * d * 4 / 2**20:.0f}; T x T scores would be {b * h * t * t * 4 / 2**20:.0f})")

    benchmark.group = "attention forward+backward"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, shape=(b, h, t, d), cpu=machine.cpu_model())
    for got, want in zip(ember_run(), torch_run()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
