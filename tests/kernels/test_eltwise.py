"""The elementwise kernels (ReLU forward and backward, erf) against their NumPy expressions,
exactly, at several thread counts; in place; the autograd ops that use them; bad input."""

import math

import numpy as np
import pytest

import ember
from ember import _C

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 3.0, -3.0]


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}t")
def threads(request):
    before = ember.get_num_threads()
    ember.set_num_threads(request.param)
    yield request.param
    ember.set_num_threads(before)


def sample(rng, n, dtype):
    x = rng.standard_normal(n).astype(dtype)
    x[: len(SPECIAL)] = SPECIAL[: n]
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 9, 1000, 200_003])
def test_relu_forward_and_backward_match_numpy(rng, threads, dtype, n):
    x = sample(rng, n, dtype)
    g = sample(rng, n, dtype)[::-1].copy()
    y = np.full_like(x, -1.0)  # poisoned (ReLU never gives -1): every element must be written
    _C.relu_fwd(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert np.array_equal(np.signbit(y), np.signbit(np.maximum(x, 0)))  # -0.0 kept as NumPy keeps it
    dx = np.full_like(x, 12345.0)
    _C.relu_bwd(g, y, dx)
    np.testing.assert_array_equal(dx, np.where(y <= 0, 0, g))  # through a NaN too, as PyTorch's


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_matches_libm(rng, threads, dtype):
    x = np.concatenate([sample(rng, 5000, dtype) * 2, np.array([6.0, -6.0, 1e-30, 0.5], dtype)])
    out = np.full_like(x, 5.0)  # erf never gives 5
    _C.erf(x, out)
    want = np.array([math.erf(v) if not np.isnan(v) else np.nan for v in x.astype(np.float64)])
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    assert np.all((np.abs(out - want) <= 2 * ulp) | (np.isnan(out) & np.isnan(want)))


def test_in_place(rng):
    x = rng.standard_normal(100_000).astype(np.float32)
    want = np.maximum(x, 0)
    _C.relu_fwd(x, x)
    np.testing.assert_array_equal(x, want)
    g = rng.standard_normal(100_000).astype(np.float32)
    want = np.where(x > 0, g, 0)
    _C.relu_bwd(g, x, g)
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("shape", [(3, 4), (64, 32, 30, 30)])  # NumPy's path and the kernel's
def test_autograd_relu_and_gelu_on_large_and_small_tensors(rng, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    x = ember.from_numpy(a).requires_grad_()
    y = x.relu()
    y.backward(ember.from_numpy(g))
    np.testing.assert_array_equal(y.detach().numpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(a > 0, g, 0))
    # The transposed gradient is not C-contiguous: NumPy's path, same result.
    x.grad = None
    x.relu().backward(ember.from_numpy(np.ascontiguousarray(g.T).T))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(a > 0, g, 0))
    erf = np.vectorize(math.erf)(a.astype(np.float64) / math.sqrt(2))
    np.testing.assert_allclose(ember.nn.functional.gelu(x).detach().numpy(), a * 0.5 * (1 + erf), rtol=2e-6, atol=1e-7)


def test_bad_input():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(TypeError, match="relu_fwd: input must be a numpy.ndarray, got list"):
        _C.relu_fwd([1.0], x)
    with pytest.raises(TypeError, match="relu_fwd: input must have dtype float32 or float64, got int64"):
        _C.relu_fwd(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="relu_fwd: out has dtype float64 but input has float32"):
        _C.relu_fwd(x, np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"relu_fwd: out has shape \(5, 4\) but input has shape \(4, 5\)"):
        _C.relu_fwd(x, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"relu_bwd: output has shape \(5,\) but grad_output has shape \(4, 5\)"):
        _C.relu_bwd(x, np.zeros(5, np.float32), x)
    with pytest.raises(ValueError, match="erf: input must be C-contiguous"):
        _C.erf(x.T, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="relu_fwd: out is read-only"):
        ro = np.zeros((4, 5), np.float32)
        ro.flags.writeable = False
        _C.relu_fwd(x, ro)
    big = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="out partly overlaps input"):
        _C.relu_fwd(big[1:], big[:-1])
    with pytest.raises(TypeError, match="gelu: input must be float32 or float64, got int64"):
        ember.nn.functional.gelu(ember.tensor([1, 2]))


def numpy_gelu(x):
    t = x.dtype.type
    with np.errstate(invalid="ignore"):  # inf * 0 at -inf: NaN, as the kernel gives
        return x * (t(0.5) * (t(1) + np.vectorize(math.erf, otypes=[x.dtype])(x / t(math.sqrt(2.0)))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 9, 20_001])
def test_gelu_forward_is_the_step_by_step_expression(isa, rng, threads, dtype, n):
    x = sample(rng, n, dtype)
    y = np.full_like(x, 7.0)
    _C.gelu_fwd(x, y)
    want = numpy_gelu(x)
    eps = np.finfo(dtype).eps  # erf's last-place rounding (math.erf vs std::erf), times x where 1 + erf cancels
    finite = np.isfinite(want)
    error = np.abs(y[finite] - want[finite])
    assert np.all(error <= 4 * eps * np.abs(want[finite]) + 2 * eps * np.abs(x[finite]))
    np.testing.assert_array_equal(y[~finite], want[~finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_backward_is_the_derivative(isa, rng, threads, dtype):
    x = rng.standard_normal(30_001).astype(dtype) * 3
    g = rng.standard_normal(x.size).astype(dtype)
    dx = np.empty_like(x)
    _C.gelu_bwd(g, x, dx)
    x64 = x.astype(np.float64)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x64 / math.sqrt(2)))
    want = g * (cdf + x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(dx, want, rtol=10 * np.finfo(dtype).eps, atol=10 * np.finfo(dtype).eps)
    t = ember.tensor(x.astype(np.float64)[:7], requires_grad=True)
    assert ember.autograd.gradcheck(lambda a: ember.nn.functional.gelu(a).sum(), [t])


def test_gelu_checks_its_arguments(rng):
    x = rng.standard_normal(5).astype(np.float32)
    with pytest.raises(ValueError, match=r"gelu_fwd: out"):
        _C.gelu_fwd(x, np.empty(4, np.float32))
    with pytest.raises(TypeError, match=r"gelu_bwd: input"):
        _C.gelu_bwd(x, x.astype(np.float64), np.empty(5, np.float32))


def test_gelu_float32_is_the_same_whatever_the_threads(isa, rng):
    """Every element takes the vector kernels' arithmetic, the ragged end of each thread's range
    too: the result does not depend on how the array is split."""
    x = rng.standard_normal(100_003).astype(np.float32) * 3
    g = rng.standard_normal(x.size).astype(np.float32)
    before = ember.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            ember.set_num_threads(t)
            y, dx = np.empty_like(x), np.empty_like(x)
            _C.gelu_fwd(x, y)
            _C.gelu_bwd(g, x, dx)
            outs.append((y, dx))
    finally:
        ember.set_num_threads(before)
    for y, dx in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(dx, outs[0][1])
    head = x[:5].copy()  # a short array: one partial vector
    out = np.empty_like(head)
    _C.gelu_fwd(head, out)
    np.testing.assert_array_equal(out, outs[0][0][:5])
