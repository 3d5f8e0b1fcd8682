"""Mixed-precision benchmarks: Ember's bf16 GEMM (AMX tiles or vdpbf16ps where the CPU has them)
against PyTorch CPU's bf16 matmul and against Ember's own fp32 GEMM, in one run.

    python -m pytest benchmarks/bench_precision.py --benchmark-only --benchmark-json=precision.json
    python benchmarks/report.py precision.json

Every record carries the precision it ran in (``extra_info["precision"]``) and the ISA level Ember
used. With --benchmark-disable (as CI runs it) each case runs once and its result is checked.
"""

import numpy as np
import pytest

import ember

from helpers import THREADS, time_case

CATALOGUE = {"bench_bf16_gemm": ("gemm_bf16",)}


def bench_bf16_gemm(benchmark, item):
    """Ember's bf16 GEMM (float32 out) against its fp32 GEMM on the same values and PyTorch's bf16
    matmul (bf16 out), ``ember.bench``'s catalogue (``ember bench gemm_bf16 --full``)."""
    time_case(benchmark, item)
    benchmark.extra_info["isa"] = ember.get_isa()


MODEL_CASES = [(t, impl) for t in THREADS for impl in ("ember", "ember-fp32", "torch-bf16")]


def _policy(impl):
    """(library, context manager factory) of an implementation of the CNN cases."""
    from bench_training import lib_for

    if impl == "torch-bf16":
        lib = lib_for("torch")
        return lib, lambda: lib.autocast("cpu", dtype=lib.bfloat16)
    return ember, (lambda: ember.autocast("fp32" if impl == "ember-fp32" else "bf16"))


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_bf16_train_step(benchmark, case):
    """One Adam step of the seed CNN at batch 64 under each policy (PyTorch: CPU autocast bf16)."""
    from bench_training import timed, train_step

    threads, impl = case
    lib, policy = _policy(impl)
    batch = 16 if getattr(benchmark, "disabled", False) else 64
    step, losses = train_step(lib, batch, policy)
    benchmark.extra_info.update(precision="fp32" if impl == "ember-fp32" else "bf16", isa=ember.get_isa())
    timed(benchmark, step, f"bf16 train step CNN batch {batch} {threads}t", impl, threads, batch)
    for _ in range(5):
        step()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]  # it learns the fixed batch


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_bf16_inference(benchmark, case):
    """The seed CNN's inference at batch 256 under each policy."""
    from bench_training import inference, timed

    threads, impl = case
    lib, policy = _policy(impl)
    batch = 32 if getattr(benchmark, "disabled", False) else 256
    infer, check = inference(lib, batch, policy)
    benchmark.extra_info.update(precision="fp32" if impl == "ember-fp32" else "bf16", isa=ember.get_isa())
    timed(benchmark, infer, f"bf16 inference CNN batch {batch} {threads}t", impl, threads, batch)
    # The timed result must be right: fp32 to float32 rounding, bf16 within bf16's rounding of the
    # products -- and, to show bf16 products were used, further off than float32 rounding would be.
    error = check(1e-4 if impl == "ember-fp32" else 0.05)
    if impl != "ember-fp32":
        assert error > 1e-4, f"{impl} is as exact as float32: its products were not bf16"


CONV_CASES = [(t, impl) for t in THREADS for impl in ("ember", "ember-fp32", "torch-bf16")]


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_bf16_conv2d(benchmark, case, backward):
    """conv2d 64->64, 3x3, 32x32, batch 64 under each policy: the forward, or the forward and
    both gradients."""
    from bench_training import timed

    threads, impl = case
    lib, policy = _policy(impl)
    batch = 4 if getattr(benchmark, "disabled", False) else 64
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.standard_normal((batch, 64, 32, 32), dtype=np.float32))
    if backward:
        x.requires_grad_()
    lib.manual_seed(0)
    conv = lib.nn.Conv2d(64, 64, 3, padding=1)
    out = {}

    def run():
        if backward:
            x.grad, conv.weight.grad, conv.bias.grad = None, None, None
            with policy():
                y = conv(x)
            y.sum().backward()
            out["y"] = y
        else:
            with lib.no_grad(), policy():
                out["y"] = conv(x)

    benchmark.extra_info.update(precision="fp32" if impl == "ember-fp32" else "bf16", isa=ember.get_isa(),
                                flops=(3 if backward else 1) * 2.0 * batch * 64 * 64 * 9 * 32 * 32)
    what = "forward+backward" if backward else "forward"
    timed(benchmark, run, f"bf16 conv2d {what} 64-64 32x32 batch {batch} {threads}t", impl, threads, batch)
    # Against the float64 reference kernels, on the first and last image (the weight gradient on
    # all): bf16 within bf16's rounding of the products, fp32 within float32 rounding.
    from ember.kernels import conv2d as ref

    tolerance = 1e-4 if impl == "ember-fp32" else 0.02
    ends = [0, batch - 1]
    xs = x.detach().numpy()
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()

    def close(got, want, what):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * np.abs(want).max(), err_msg=what)

    close(out["y"].detach().float().numpy()[ends], ref.conv2d_fwd_ref(xs[ends], w, b, padding=1), "output")
    if backward:  # y.sum(): the output gradient is all ones
        dy = np.ones((batch, 64, 32, 32), np.float32)
        close(x.grad.numpy()[ends], ref.conv2d_bwd_data_ref(dy[ends], w, xs[ends].shape, padding=1), "input grad")
        dw, db = ref.conv2d_bwd_weight_ref(xs, dy, w.shape, padding=1, bias=True)
        close(conv.weight.grad.numpy(), dw, "weight grad")
        close(conv.bias.grad.numpy(), db, "bias grad")
