"""The layer and RMS normalisation kernels (ember.kernels.layer_norm) against NumPy in float64,
at several thread counts and shapes, with and without the affine parameters; the LayerNorm and
RMSNorm layers on them against PyTorch and by gradcheck; bad arguments."""

import numpy as np
import pytest

import ember
from ember import _C, nn
from ember.autograd.fused import LayerNormFn, RMSNormFn
from ember.kernels import layer_norm


def numpy_layer_norm(x, w, b, eps, axes):
    x = x.astype(np.float64)
    mean = x.mean(axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return xhat * (1 if w is None else w) + (0 if b is None else b), xhat


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape, normalized", [((5, 7), (7,)), ((3, 4, 384), (384,)), ((2, 3, 4, 5), (4, 5)),
                                                ((0, 6), (6,)), ((3000, 33), (33,))])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_forward_and_backward_match_numpy(rng, threads, shape, normalized, affine):
    before = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
        w = rng.standard_normal(normalized).astype(np.float32) if affine != "none" else None
        b = rng.standard_normal(normalized).astype(np.float32) if affine == "both" else None
        y, mean, rstd = layer_norm.layer_norm_fwd(x, normalized, w, b, 1e-5)
        axes = tuple(range(x.ndim - len(normalized), x.ndim))
        want, xhat = numpy_layer_norm(x, w, b, 1e-5, axes)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
        g = rng.standard_normal(shape).astype(np.float32)
        dx, dw, db = layer_norm.layer_norm_bwd(g, x, normalized, w, mean, rstd, weight_grad=w is not None,
                                               bias_grad=b is not None)
        g64, n = g.astype(np.float64), int(np.prod(normalized))
        gw = g64 * (1 if w is None else w)
        rs = 1 / np.sqrt(x.astype(np.float64).var(axes, keepdims=True) + 1e-5)
        want_dx = rs * (gw - gw.mean(axes, keepdims=True) - xhat * (gw * xhat).sum(axes, keepdims=True) / n)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4)
        lead = tuple(range(x.ndim - len(normalized)))
        if w is not None:
            np.testing.assert_allclose(dw, (g64 * xhat).sum(lead), rtol=1e-4, atol=1e-4)
        if b is not None:
            np.testing.assert_allclose(db, g64.sum(lead), rtol=1e-5, atol=1e-4)
    finally:
        ember.set_num_threads(before)


def test_the_layer_matches_pytorch_and_gradchecks(rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LayerNorm((4, 6))
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = nn.LayerNorm((4, 6))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    xt, xe = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    theirs(xt).pow(3).sum().backward()
    (ours(xe) ** 3).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters())[name].grad.numpy(), p.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
    w, b = (ember.tensor(rng.standard_normal(5), dtype=np.float64, requires_grad=True) for _ in range(2))
    y = ember.tensor(rng.standard_normal((3, 5)), dtype=np.float64, requires_grad=True)
    mix = ember.tensor(rng.standard_normal((3, 5)), dtype=np.float64)  # so no sum is constant
    assert ember.autograd.gradcheck(
        lambda t, w, b: (LayerNormFn.apply(t, w, b, normalized_shape=(5,), eps=1e-5) * mix).sum(), [y, w, b])


def test_arguments_are_checked(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"does not end in \(6,\)"):
        layer_norm.layer_norm_fwd(x, (6,))
    with pytest.raises(TypeError, match=r"weight must have dtype float32"):
        layer_norm.layer_norm_fwd(x, (5,), np.ones(5))
    with pytest.raises(ValueError, match=r"layer_norm_fwd: eps must be finite and >= 0"):
        _C.layer_norm_fwd(x, None, None, -1.0, np.empty_like(x), np.empty(4, np.float32), np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"layer_norm_fwd: bias"):
        _C.layer_norm_fwd(x, None, np.ones(4, np.float32), 1e-5, np.empty_like(x), np.empty(4, np.float32),
                          np.empty(4, np.float32))
    y = np.empty_like(x)
    with pytest.raises(ValueError, match=r"overlap|share memory"):
        _C.layer_norm_fwd(x, None, None, 1e-5, y, y[0, :4], np.empty(4, np.float32))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, normalized", [((5, 7), (7,)), ((3, 4, 384), (384,)), ((2, 3, 4, 5), (4, 5)),
                                                ((0, 6), (6,))])
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_matches_numpy(rng, threads, shape, normalized, affine):
    before = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        w = rng.standard_normal(normalized).astype(np.float32) if affine else None
        y, rstd = layer_norm.rms_norm_fwd(x, normalized, w, 1e-6)
        axes = tuple(range(x.ndim - len(normalized), x.ndim))
        x64, n = x.astype(np.float64), int(np.prod(normalized))
        rs = 1 / np.sqrt((x64 * x64).mean(axes, keepdims=True) + 1e-6)
        xhat = x64 * rs
        np.testing.assert_allclose(y, xhat * (1 if w is None else w), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rstd, rs.reshape(-1), rtol=1e-6)
        g = rng.standard_normal(shape).astype(np.float32)
        dx, dw = layer_norm.rms_norm_bwd(g, x, normalized, w, rstd, weight_grad=w is not None)
        gw = g.astype(np.float64) * (1 if w is None else w)
        np.testing.assert_allclose(dx, rs * (gw - xhat * (gw * xhat).sum(axes, keepdims=True) / n), rtol=1e-4,
                                   atol=1e-4)
        if w is not None:
            np.testing.assert_allclose(dw, (g * xhat).sum(tuple(range(x.ndim - len(normalized)))), rtol=1e-4,
                                       atol=1e-4)
        else:
            assert dw is None
    finally:
        ember.set_num_threads(before)


def test_the_rms_layer_runs_on_the_kernels_and_gradchecks(rng):
    layer = nn.RMSNorm(6, eps=1e-5)
    with ember.no_grad():
        layer.weight._data[...] = rng.standard_normal(6)
    x = ember.tensor(rng.standard_normal((2, 3, 6)).astype(np.float32), requires_grad=True)
    y = layer(x)
    assert y.grad_fn.name() == "RMSNormBackward"  # the fused kernels, not the composite formula
    x64 = x.detach().numpy().astype(np.float64)
    want = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-5) * layer.weight.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    w = ember.tensor(rng.standard_normal(5), dtype=np.float64, requires_grad=True)
    t = ember.tensor(rng.standard_normal((3, 5)), dtype=np.float64, requires_grad=True)
    mix = ember.tensor(rng.standard_normal((3, 5)), dtype=np.float64)
    assert ember.autograd.gradcheck(lambda t, w: (RMSNormFn.apply(t, w, normalized_shape=(5,), eps=1e-5) * mix).sum(),
                                    [t, w])
    assert ember.autograd.gradcheck(lambda t: (RMSNormFn.apply(t, None, normalized_shape=(5,), eps=1e-5) * mix).sum(),
                                    [t])


def test_rms_arguments_are_checked(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"rms_norm_fwd: eps must be finite and >= 0"):
        _C.rms_norm_fwd(x, None, float("nan"), np.empty_like(x), np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"rms_norm_fwd: out_rstd has shape \(3,\)"):
        _C.rms_norm_fwd(x, None, 1e-5, np.empty_like(x), np.empty(3, np.float32))
    with pytest.raises(ValueError, match=r"rms_norm_fwd: out must not share memory with input"):
        _C.rms_norm_fwd(x, None, 1e-5, x, np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"does not end in \(6,\)"):
        layer_norm.rms_norm_fwd(x, (6,))


def test_outputs_apart_from_the_weight_and_bias(rng):
    """A weight or bias inside an output would be overwritten while the kernel still reads it."""
    x = rng.standard_normal((4, 8)).astype(np.float32)
    out, mean, rstd = np.empty((4, 8), np.float32), np.empty(4, np.float32), np.empty(4, np.float32)
    with pytest.raises(ValueError, match=r"layer_norm_fwd: out must not share memory with weight"):
        _C.layer_norm_fwd(x, out[1], None, 1e-5, out, mean, rstd)
    with pytest.raises(ValueError, match=r"layer_norm_fwd: out must not share memory with bias"):
        _C.layer_norm_fwd(x, None, out[3], 1e-5, out, mean, rstd)
    with pytest.raises(ValueError, match=r"rms_norm_fwd: out must not share memory with weight"):
        _C.rms_norm_fwd(x, out[0], 1e-5, out, rstd)
    _C.layer_norm_fwd(x, None, None, 1e-5, out, mean, rstd)
    dx, dw = np.empty((4, 8), np.float32), np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"layer_norm_bwd: out_weight must not share memory with weight"):
        _C.layer_norm_bwd(x, x.copy(), dw, mean, rstd, dx, dw, None)
    with pytest.raises(ValueError, match=r"layer_norm_bwd: out must not share memory with weight"):
        _C.layer_norm_bwd(x, x.copy(), dx[2], mean, rstd, dx, None, None)
