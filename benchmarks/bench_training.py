"""Training and inference with the Python layer, against PyTorch CPU in the same run, 2
threads and 1: one Adam step of the CNN Conv2d(3,32,3) -> ReLU -> MaxPool2d(2) -> Flatten ->
Linear(7200,128) -> ReLU -> Linear(128,10) at batch 64, its inference at batch 256, and the
Python overhead of 1000 small elementwise ops (16x16) forward and backward.
``extra_info`` holds samples/s (ops/s for the overhead case).

    python -m pytest benchmarks/bench_training.py --benchmark-only --benchmark-json=train.json
    python benchmarks/report.py train.json
"""

import contextlib

import numpy as np
import pytest

import ember
from helpers import THREADS, settle, thread_limit

try:
    import torch
except ImportError:  # optional reference
    torch = None

CASES = [(t, impl) for t in THREADS for impl in ("ember", "torch")]


def cnn(lib):
    return lib.nn.Sequential(lib.nn.Conv2d(3, 32, 3), lib.nn.ReLU(), lib.nn.MaxPool2d(2), lib.nn.Flatten(),
                             lib.nn.Linear(7200, 128), lib.nn.ReLU(), lib.nn.Linear(128, 10))


def numpy_cnn(state, x):
    """The CNN's forward pass in float64 NumPy from its state_dict (PyTorch's keys for both)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = x.astype(np.float64)
    w, b = state["0.weight"].astype(np.float64), state["0.bias"].astype(np.float64)
    patches = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # n, c, oh, ow, kh, kw
    y = np.einsum("nchwij,ocij->nohw", patches, w, optimize=True) + b[:, None, None]
    y = np.maximum(y, 0)
    n, c, h, wd = y.shape
    y = y[:, :, : h // 2 * 2, : wd // 2 * 2].reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    y = y.reshape(n, -1) @ state["4.weight"].T.astype(np.float64) + state["4.bias"]
    return np.maximum(y, 0) @ state["6.weight"].T.astype(np.float64) + state["6.bias"]


def lib_for(impl):
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    return torch if impl == "torch" else ember


def timed(benchmark, fn, group, impl, threads, per_call):
    """Time fn under the thread limit; samples (or ops) per second into extra_info."""
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, threads=threads)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["per_s"] = per_call / stats.stats.median


def train_step(lib, batch, policy=contextlib.nullcontext):
    """One Adam step of the CNN on a fixed random batch (the forward and loss under ``policy()``),
    and the list the step appends each loss to."""
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.standard_normal((batch, 3, 32, 32), dtype=np.float32))
    y = lib.from_numpy(rng.integers(0, 10, batch))
    lib.manual_seed(0)
    model = cnn(lib)
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = lib.nn.CrossEntropyLoss()
    losses = []

    def step():
        opt.zero_grad()
        with policy():
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    return step, losses


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_train_step(benchmark, case):
    threads, impl = case
    lib = lib_for(impl)
    batch = 16 if getattr(benchmark, "disabled", False) else 64
    step, losses = train_step(lib, batch)
    timed(benchmark, step, f"train step CNN batch {batch} {threads}t", impl, threads, batch)
    for _ in range(5):
        step()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]  # it learns the fixed batch


def inference(lib, batch, policy=contextlib.nullcontext):
    """The CNN's inference on a fixed random batch under ``policy()``, and the check of its last
    result against the same network written out in float64 NumPy (within ``tolerance`` of the
    largest output)."""
    x = lib.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32))
    lib.manual_seed(0)
    model = cnn(lib).eval()
    out = {}

    def infer():
        with lib.no_grad(), policy():
            out["y"] = model(x)

    def check(tolerance):
        """Asserts the last result is within ``tolerance`` of the largest output; returns its
        largest error in those units."""
        y = out["y"].detach().float().numpy()
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        want = numpy_cnn(state, x.numpy())
        np.testing.assert_allclose(y, want, rtol=0, atol=tolerance * np.abs(want).max())
        return float(np.abs(y - want).max() / np.abs(want).max())

    return infer, check


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_inference(benchmark, case):
    threads, impl = case
    lib = lib_for(impl)
    batch = 32 if getattr(benchmark, "disabled", False) else 256
    infer, check = inference(lib, batch)
    timed(benchmark, infer, f"inference CNN batch {batch} {threads}t", impl, threads, batch)
    check(1e-4)  # the timed result must be right


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_python_overhead(benchmark, case):
    threads, impl = case
    lib = lib_for(impl)
    n_ops = 1000
    a = lib.from_numpy(np.random.default_rng(0).standard_normal((16, 16), dtype=np.float32)).requires_grad_()

    result = {}

    def run():
        y = a
        for i in range(n_ops // 4):  # four elementwise ops per round
            y = (y * 0.999 + a) * 0.5 - 0.01
        y.sum().backward()
        result["y"], result["grad"] = y.detach().numpy().copy(), a.grad.numpy().copy()
        a.grad = None

    timed(benchmark, run, f"python overhead {n_ops} ops 16x16 {threads}t", impl, threads, n_ops)
    # The timed result must be right: the recurrence and its derivative (a constant) in float64.
    a64 = a.detach().numpy().astype(np.float64)
    y, dy = a64, 1.0
    for i in range(n_ops // 4):
        y, dy = (y * 0.999 + a64) * 0.5 - 0.01, (dy * 0.999 + 1.0) * 0.5
    np.testing.assert_allclose(result["y"], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["grad"], dy, rtol=1e-5)
