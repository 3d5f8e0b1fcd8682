"""ember._cuda.relu_fwd/relu_bwd against NumPy (the CPU kernels' exact definition): float32 and
float64, sizes around the vector width, unaligned views (the scalar path), in place, NaN and -0.0."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_equal, dev, host, poisoned, sync

pytestmark = CUDA_MARKS

SIZES = [0, 1, 3, 4, 5, 1000, 4099, (1 << 20) + 3]


def data(rng, n, dtype):
    x = rng.standard_normal(n).astype(dtype)
    if n > 8:
        x[:4] = [np.nan, -0.0, 0.0, np.inf]
        x[-1] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("offset", [0, 1])
def test_relu_fwd(rng, dtype, n, offset):
    x = data(rng, n + offset, dtype)
    xd = dev(x)[offset:]
    out = poisoned((n + offset,), dtype)[offset:]
    K.relu_fwd(xd, out)
    sync()
    want = np.maximum(x[offset:], 0)  # NaN kept, -0.0 -> +0.0
    got = host(out)
    assert_equal(got, want, f"relu_fwd {np.dtype(dtype).name} n={n} offset={offset}")
    assert not np.signbit(got[got == 0]).any(), "relu_fwd must turn -0.0 into +0.0"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("offset", [0, 1])
def test_relu_bwd(rng, dtype, n, offset):
    g = data(rng, n + offset, dtype)
    y = np.maximum(data(rng, n + offset, dtype), 0)
    out = poisoned((n + offset,), dtype)[offset:]
    K.relu_bwd(dev(g)[offset:], dev(y)[offset:], out)
    sync()
    want = np.where(y[offset:] <= 0, 0, g[offset:]).astype(dtype)  # a NaN output passes the gradient
    assert_equal(host(out), want, f"relu_bwd {np.dtype(dtype).name} n={n} offset={offset}")


def test_relu_in_place_2d(rng):
    x = data(rng, 3 * 1001, np.float32).reshape(3, 1001)
    xd = dev(x)
    K.relu_fwd(xd, xd)
    sync()
    assert_equal(host(xd), np.maximum(x, 0), "relu_fwd in place")
    g = dev(data(rng, 3 * 1001, np.float32).reshape(3, 1001))
    g_h = host(g)
    K.relu_bwd(g, xd, g)
    sync()
    assert_equal(host(g), np.where(np.maximum(x, 0) <= 0, 0, g_h).astype(np.float32), "relu_bwd in place")


def test_relu_checks(rng):
    x = dev(rng.standard_normal(10).astype(np.float32))
    with pytest.raises(TypeError, match="host array"):
        K.relu_fwd(host(x), x)
    with pytest.raises(TypeError, match="dtype"):
        K.relu_fwd(x, poisoned((10,), np.float64))
    with pytest.raises(ValueError, match="shape"):
        K.relu_fwd(x, poisoned((9,)))
    with pytest.raises(ValueError, match="partly overlaps"):
        buf = dev(rng.standard_normal(11).astype(np.float32))
        K.relu_fwd(buf[:10], buf[1:])
    with pytest.raises(ValueError, match="contiguous"):
        K.relu_fwd(dev(rng.standard_normal(20).astype(np.float32))[::2], poisoned((10,)))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 4e-7), (np.float64, 1e-15)])
@pytest.mark.parametrize("n", [0, 1, 4099])
def test_erf(rng, dtype, rtol, n):
    x = (rng.standard_normal(n) * 3).astype(dtype)
    out = poisoned((n,), dtype)
    K.erf(dev(x), out)
    sync()
    want = np.empty_like(x)
    import ember

    ember.backend.CPU.kernels.erf(x, want)  # the CPU kernel, itself checked against math.erf
    np.testing.assert_allclose(host(out), want, rtol=rtol, atol=rtol)
