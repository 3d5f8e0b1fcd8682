"""conv2d benchmarks, forward and forward+backward: ember against PyTorch CPU (oneDNN, when
installed; autograd for the backward) and explicit im2col + NumPy GEMM, in one run, 2 threads
and 1; GFLOP/s in ``extra_info``.

The layers of a small CNN at batch 64: its first layer (3 -> 32 channels, 32x32, 3x3), a
64 -> 64 layer at 32x32, 128 -> 128 at 16x16, a 1x1 convolution, a depthwise 3x3 and a
stride-2 layer. Forward+backward is what a training step runs: the forward, the weight and
bias gradients, and the input gradient except for the first layer (its input is the data).

    python -m pytest benchmarks/bench_conv2d.py --benchmark-only
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from ember import kernels
from helpers import THREADS, settle, thread_limit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None

# name, input shape, weight shape, conv arguments
LAYERS = [
    ("first 3-32 32x32", (64, 3, 32, 32), (32, 3, 3, 3), dict(padding=1)),
    ("64-64 32x32", (64, 64, 32, 32), (64, 64, 3, 3), dict(padding=1)),
    ("128-128 16x16", (64, 128, 16, 16), (128, 128, 3, 3), dict(padding=1)),
    ("1x1 64-64 32x32", (64, 64, 32, 32), (64, 64, 1, 1), dict()),
    ("depthwise 3x3 64 32x32", (64, 64, 32, 32), (64, 1, 3, 3), dict(padding=1, groups=64)),
    ("stride-2 64-128 32x32", (64, 64, 32, 32), (128, 64, 3, 3), dict(padding=1, stride=2)),
]
CASES = [(t, layer, impl) for t in THREADS for layer in LAYERS for impl in ("ember", "torch", "im2col+numpy")]


def im2col_numpy(x, w, b, padding=0, stride=1, groups=1):
    """The explicit way: build the whole patch matrix, then one GEMM per image."""
    o, c, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # N C OH OW KH KW
    n, _, oh, ow = cols.shape[:4]
    patches = np.ascontiguousarray(cols.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow)
    y = np.matmul(w.reshape(o, -1), patches).reshape(n, o, oh, ow)
    return y + b[None, :, None, None]


def im2col_numpy_backward(x, w, dy, padding=0, stride=1, groups=1, need_dx=True):
    """The explicit backward: dw = dy @ patchesᵀ and db summed over images, dx by col2im
    (one strided slice add per kernel tap)."""
    o, c, kh, kw = w.shape
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = cols.shape[2:4]
    patches = np.ascontiguousarray(cols.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow)
    dy2 = dy.reshape(n, o, oh * ow)
    dw = np.matmul(dy2, patches.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dx = None
    if need_dx:
        dcols = np.matmul(w.reshape(o, -1).T, dy2).reshape(n, c, kh, kw, oh, ow)
        dxp = np.zeros_like(xp)
        for p in range(kh):
            for q in range(kw):
                dxp[:, :, p : p + stride * (oh - 1) + 1 : stride, q : q + stride * (ow - 1) + 1 : stride] += \
                    dcols[:, :, p, q]
        dx = dxp[:, :, padding : padding + h, padding : padding + wd]
    return dx, dw, db


def skip_unavailable(impl, kwargs):
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    if impl == "im2col+numpy" and kwargs.get("groups", 1) != 1:
        pytest.skip("the explicit im2col reference covers groups=1 only")


def record_gflops(benchmark, flops):
    """GFLOP/s of the median time in extra_info (when timing is on)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gflops"] = flops / stats.stats.median * 1e-9


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1][0].replace(' ', '_')}-{c[2]}-{c[0]}t")
def bench_conv2d_forward(benchmark, case):
    threads, (name, x_shape, w_shape, kwargs), impl = case
    skip_unavailable(impl, kwargs)
    rng = np.random.default_rng()
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    result = {}
    if impl == "ember":
        def run():
            result["y"] = kernels.conv2d.conv2d_fwd(x, w, b, **kwargs)
    elif impl == "torch":
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

        def run():
            result["y"] = F.conv2d(tx, tw, tb, **kwargs).numpy()
    else:
        def run():
            result["y"] = im2col_numpy(x, w, b, **kwargs)

    benchmark.group = f"conv2d forward {name} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, layer=name)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    y = result["y"]
    flops = 2.0 * y.size * w_shape[1] * w_shape[2] * w_shape[3]
    record_gflops(benchmark, flops)
    # The timed result must be right: one image against the reference.
    want = kernels.conv2d.conv2d_fwd_ref(x[:1], w, b, **kwargs)
    k = w_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(y[:1], want, rtol=0, atol=(k + 4) * 2.0**-24 * 4 * (np.abs(want).max() + 1))


_REFERENCE_GRADIENTS = {}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1][0].replace(' ', '_')}-{c[2]}-{c[0]}t")
def bench_conv2d_forward_backward(benchmark, case):
    threads, (name, x_shape, w_shape, kwargs), impl = case
    skip_unavailable(impl, kwargs)
    need_dx = not name.startswith("first")
    rng = np.random.default_rng(LAYERS.index(case[1]))  # the same operands for every impl
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    dy = rng.standard_normal(kernels.conv2d.conv2d_fwd_ref(x[:1], w, **kwargs).shape[1:], dtype=np.float32)
    dy = np.ascontiguousarray(np.broadcast_to(dy, (x_shape[0],) + dy.shape))
    result = {}
    if impl == "ember":
        def run():
            result["y"] = kernels.conv2d.conv2d_fwd(x, w, b, **kwargs)
            result["dx"] = kernels.conv2d.conv2d_bwd_data(dy, w, x.shape, **kwargs) if need_dx else None
            result["dw"], result["db"] = kernels.conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True, **kwargs)
    elif impl == "torch":
        tx = torch.from_numpy(x).requires_grad_(need_dx)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        tdy = torch.from_numpy(dy)

        def run():
            tx.grad = tw.grad = tb.grad = None
            ty = F.conv2d(tx, tw, tb, **kwargs)
            ty.backward(tdy)
            result["y"] = ty.detach().numpy()
            result["dx"] = tx.grad.numpy() if need_dx else None
            result["dw"], result["db"] = tw.grad.numpy(), tb.grad.numpy()
    else:
        def run():
            result["y"] = im2col_numpy(x, w, b, **kwargs)
            result["dx"], result["dw"], result["db"] = im2col_numpy_backward(x, w, dy, need_dx=need_dx, **kwargs)

    benchmark.group = f"conv2d forward+backward {name} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads, layer=name)
    with thread_limit(threads):
        settle(benchmark)
        benchmark(run)
    y = result["y"]
    flops = 2.0 * y.size * w_shape[1] * w_shape[2] * w_shape[3] * (3 if need_dx else 2)
    record_gflops(benchmark, flops)
    # The timed results must be right: against the references (the weight gradient over the
    # whole batch; the input gradient of the first image).
    k = w_shape[1] * w_shape[2] * w_shape[3]
    if name not in _REFERENCE_GRADIENTS:  # the plain-loop reference is slow: once per layer
        _REFERENCE_GRADIENTS[name] = kernels.conv2d.conv2d_bwd_weight_ref(x, dy, w.shape, bias=True, **kwargs)
    want_dw, want_db = _REFERENCE_GRADIENTS[name]
    terms = y.shape[0] * y.shape[2] * y.shape[3]
    np.testing.assert_allclose(result["dw"], want_dw, rtol=1e-4, atol=terms * 2.0**-20 * 16)
    np.testing.assert_allclose(result["db"], want_db, rtol=1e-4, atol=terms * 2.0**-20 * 4)
    if need_dx:
        want_dx = kernels.conv2d.conv2d_bwd_data_ref(dy[:1], w, (1,) + x_shape[1:], **kwargs)
        np.testing.assert_allclose(result["dx"][:1], want_dx, rtol=0,
                                   atol=(k + 4) * 2.0**-24 * 16 * (np.abs(want_dx).max() + 1))
