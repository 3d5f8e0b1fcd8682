"""What the kernel doors make of arguments a fuzzer (or a careless caller) passes: numbers
beyond float64 or int64, the wrong kind of value, shapes that no array can have, outputs that
overlap themselves, packed weights whose column sums lie. Each gets an exception naming the
argument, or the right answer; never a message about something the caller did not pass."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import _C, kernels, quant

HUGE = 2**1100  # beyond float64's range as well as int64's


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_gemm_scalars_are_named(rng):
    a, b = f32(rng, 2, 3), f32(rng, 3, 4)
    with pytest.raises(OverflowError, match="beta"):
        kernels.gemm.gemm(a, b, beta=HUGE)
    with pytest.raises(OverflowError, match="alpha"):
        kernels.gemm.gemm(a, b, alpha=-HUGE)
    with pytest.raises(TypeError, match="alpha must be a real number, got str"):
        kernels.gemm.gemm(a, b, alpha="2")
    np.testing.assert_allclose(kernels.gemm.gemm(a, b, alpha=np.float32(2)), 2 * a @ b, rtol=1e-5)


def test_cross_entropy_scalars_are_named(rng):
    z, t = f32(rng, 4, 5), np.array([0, 1, 2, 3])
    _, lse = kernels.cross_entropy.cross_entropy_fwd(z, t, return_lse=True)
    with pytest.raises(OverflowError, match="grad_output"):
        kernels.cross_entropy.cross_entropy_bwd(z, t, lse, HUGE)
    with pytest.raises(TypeError, match="grad_output"):
        kernels.cross_entropy.cross_entropy_bwd(z, t, lse, "1")
    with pytest.raises(TypeError, match="label_smoothing"):
        kernels.cross_entropy.cross_entropy_fwd(z, t, label_smoothing=None)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        kernels.cross_entropy.cross_entropy_fwd(z, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="chunk_bytes"):
        kernels.cross_entropy.linear_cross_entropy(z, f32(rng, 3, 5), np.array([0, 1, 2, 0]), chunk_bytes=0)
    rows = kernels.cross_entropy.cross_entropy_bwd(z, t, lse, [1.0, 2.0, 0.0, 1.0], reduction="none")
    assert rows.shape == z.shape and not rows[2].any()


def test_linear_cross_entropy_reads_a_misaligned_hidden(rng):
    h, w, t = f32(rng, 6, 8), f32(rng, 5, 8), rng.integers(0, 5, 6)
    raw = np.zeros(h.nbytes + 1, np.uint8)
    odd = np.frombuffer(raw[1:].data, np.float32).reshape(h.shape)  # elements at odd addresses
    odd[...] = h
    assert not odd.flags.aligned
    want = kernels.cross_entropy.linear_cross_entropy(h, w, t)
    got = kernels.cross_entropy.linear_cross_entropy(odd, w, t)
    for g, e in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name", ["relu_fwd", "erf"])
def test_elementwise_keeps_a_0d_shape(name):
    x = np.array(-0.5, np.float32)
    y = getattr(kernels.eltwise, name)(x)
    assert y.shape == ()
    g = kernels.eltwise.relu_bwd(np.array(3.0, np.float32), np.array(2.0, np.float32))
    assert g.shape == () and g == 3.0


def test_optimizer_step_arguments_are_named(rng):
    p, g, m, v = (f32(rng, 3) for _ in range(4))
    v = np.abs(v)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    with pytest.raises(TypeError, match="steps must be a list"):
        kernels.optim_step.adam_step([p], [g], [m], [v], None, None, **kw)
    with pytest.raises(TypeError, match="grads must be a list"):
        kernels.optim_step.adam_step([p], g, [m], [v], None, [1], **kw)
    with pytest.raises(OverflowError, match="lr"):
        kernels.optim_step.adam_step([p], [g], [m], [v], None, [1], **{**kw, "lr": HUGE})
    with pytest.raises(TypeError, match=r"steps\[0\] must be an int"):
        kernels.optim_step.adam_step([p], [g], [m], [v], None, [1.0], **kw)
    with pytest.raises(OverflowError, match="momentum"):
        kernels.optim_step.sgd_step([p], [g], None, lr=0.1, momentum=HUGE)
    before = p.copy()
    with pytest.raises(ValueError, match=r"momentum_buffers must be given when momentum \(0.9\) is not 0"):
        kernels.optim_step.sgd_step([p], [g], None, lr=0.1, momentum=0.9, first=True)  # not plain SGD, silently
    np.testing.assert_array_equal(p, before)


def test_adam_second_moment_beyond_float32_stops_the_step():
    """The moments are float32 state: when g**2 overflows it, the stored second moment is
    infinite and the step is zero on every path, the double-precision reference included
    (PyTorch's float32 arithmetic gives the same)."""
    torch = pytest.importorskip("torch")
    for reference in (False, True):
        p, g, m, v = (np.array([x], np.float32) for x in (0.125, 3.0, 0.125, 2.5))
        kernels.optim_step.adam_step([p], [g], [m], [v], None, [1], lr=1e-3, beta1=0.9, beta2=0.999, eps=0.0,
                                     weight_decay=1e30, reference=reference)
        assert np.isinf(v[0]) and p[0] == np.float32(0.125), reference
    tp = torch.tensor([0.125], requires_grad=True)
    opt = torch.optim.Adam([tp], lr=1e-3, eps=0.0, weight_decay=1e30)
    tp.grad = torch.tensor([3.0])
    opt.step()
    assert np.isinf(opt.state[tp]["exp_avg_sq"].item()) and tp.item() == 0.125


def test_geometry_arguments_are_named(rng):
    x, dy = f32(rng, 1, 1, 4, 4), f32(rng, 1, 1, 2, 2)
    with pytest.raises(TypeError, match="input_shape must be a sequence of 4 ints"):
        kernels.pool2d.avg_pool2d_bwd(dy, "abcd", 2)
    with pytest.raises(TypeError, match="input_shape"):
        kernels.pool2d.adaptive_avg_pool2d_bwd(dy, (1, 1, 4.0, 4))
    with pytest.raises(ValueError, match=r"input_shape \(1, 1, 4294967296, 4294967296\) is too big"):
        kernels.pool2d.adaptive_avg_pool2d_bwd(dy, (1, 1, 2**32, 2**32))
    with pytest.raises(ValueError, match="the output .* with padding 1073741824 is too big"):
        kernels.conv2d.conv2d_fwd(x, f32(rng, 1, 1, 1, 1), padding=2**30)
    with pytest.raises(ValueError, match="output_size"):
        kernels.pool2d.adaptive_avg_pool2d_fwd(x, 2**31)
    with pytest.raises(ValueError, match="output_size"):  # no elements, yet no array has such dimensions
        kernels.pool2d.adaptive_avg_pool2d_fwd(np.zeros((1, 0, 4, 4), np.float32), 2**31)


def test_matmul_refuses_an_out_that_overlaps_itself(rng):
    a, b = f32(rng, 3, 2, 4), f32(rng, 4, 5)
    base = np.zeros((2, 5), np.float32)
    out = np.lib.stride_tricks.as_strided(base, (3, 2, 5), (0, 20, 4))  # every batch entry the same memory
    with pytest.raises(ValueError, match="out must not overlap itself"):
        kernels.gemm.matmul(a, b, out=out)
    good = np.zeros((3, 4, 5), np.float32)[:, ::2]  # every other row: strided, not overlapping
    np.testing.assert_allclose(kernels.gemm.matmul(a, b, out=good), a @ b, rtol=1e-5)


def test_quantized_weight_checks_its_column_sums(rng):
    qw = quant.quantize_weight(f32(rng, 40, 64), bits=8)
    with pytest.raises(ValueError, match="colsum: channel 3's column sum is"):
        bad = qw.colsum.copy()
        bad[3] += 1
        quant.QuantizedWeight(8, (40, 64), qw.data, qw.scales, bad)
    data = qw.data.copy()
    data[0] = -128
    with pytest.raises(ValueError, match=r"data: int8 weights must lie in \[-127, 127\]"):
        quant.QuantizedWeight(8, (40, 64), data, qw.scales)
    derived = quant.QuantizedWeight(8, (40, 64), qw.data, qw.scales)
    np.testing.assert_array_equal(derived.colsum, qw.colsum)
    x = f32(rng, 3, 64)
    np.testing.assert_array_equal(derived.matmul(x), qw.matmul(x))


def test_runtime_bindings_name_their_arguments():
    with pytest.raises(TypeError, match="set_isa: name must be a str, got NoneType"):
        _C.set_isa(None)
    assert _C.empty(5, "float32").shape == (5,)
    with pytest.raises(OverflowError, match="set_num_threads: n"):
        _C.set_num_threads(HUGE)
    assert ember.get_isa() in _C.available_isas()
