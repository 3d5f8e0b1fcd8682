"""ember.matmul follows numpy.matmul's shape rules on top of the native GEMM."""

import numpy as np
import pytest

import ember


def ints(rng, shape):
    return rng.integers(-4, 5, size=shape).astype(np.float32)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((5,), (5,)),
        ((5,), (5, 3)),
        ((4, 5), (5,)),
        ((4, 5), (5, 3)),
        ((2, 4, 5), (5, 3)),
        ((4, 5), (2, 5, 3)),
        ((2, 1, 4, 5), (3, 5, 6)),
        ((3, 4, 5), (3, 5, 6)),
        ((2, 3, 5), (5,)),
        ((5,), (2, 5, 3)),
        ((0, 4, 5), (5, 2)),
        ((4, 0), (0, 3)),
        ((1, 9, 1), (2, 1, 7)),
    ],
)
def test_matmul_matches_numpy(isa, rng, a_shape, b_shape):
    a, b = ints(rng, a_shape), ints(rng, b_shape)
    got = ember.matmul(a, b)
    want = np.matmul(a, b)
    assert np.shape(got) == want.shape
    np.testing.assert_array_equal(got, want)


def test_matmul_reads_views_in_place(rng):
    base = ints(rng, (3, 20, 30))
    a = base[:, ::2, 1:11].transpose(0, 2, 1)  # (3, 10, 10), strided and transposed
    b = base[::-1, 3:13, ::3]  # (3, 10, 10), negative batch stride
    np.testing.assert_array_equal(ember.matmul(a, b), np.matmul(a, b))


def test_matmul_out(rng):
    a, b = ints(rng, (2, 4, 5)), ints(rng, (5, 3))
    out = np.empty((2, 4, 3), np.float32)
    assert ember.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, np.matmul(a, b))
    vec_out = np.empty((4,), np.float32)
    ember.matmul(a[0], b[:, 0].copy(), out=vec_out)
    np.testing.assert_array_equal(vec_out, a[0] @ b[:, 0])


def test_matmul_vector_dot_returns_a_scalar(rng):
    a, b = ints(rng, (7,)), ints(rng, (7,))
    got = ember.matmul(a, b)
    assert np.ndim(got) == 0
    assert got == np.matmul(a, b)


@pytest.mark.parametrize(
    "a_shape, b_shape, match",
    [
        ((4, 5), (4, 3), "inner dimensions differ"),
        ((5,), (4,), "inner dimensions differ"),
        ((2, 4, 5), (3, 5, 3), "batch dimensions do not broadcast"),
    ],
)
def test_matmul_shape_errors(a_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        ember.matmul(np.ones(a_shape, np.float32), np.ones(b_shape, np.float32))


def test_matmul_type_errors():
    with pytest.raises(ValueError, match="a must be at least 1-D"):
        ember.matmul(np.ones((), np.float32), np.ones((2,), np.float32))
    with pytest.raises(TypeError, match="a must have dtype float32, got float64"):
        ember.matmul(np.ones((2, 2)), np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match="b must be a numpy.ndarray"):
        ember.matmul(np.ones((2, 2), np.float32), [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"out must have shape \(2, 2\)"):
        ember.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), out=np.empty((2, 3), np.float32))


def test_matmul_out_must_not_alias_an_input():
    buf = np.zeros((4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="out must not share memory with a or b"):
        ember.matmul(buf[:3], np.eye(3, dtype=np.float32), out=buf[1:])


def test_tensors_give_a_differentiable_product():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 4, 3)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)
    ta = ember.from_numpy(a).requires_grad_()
    y = ember.matmul(ta, b)  # an array on one side joins as a constant
    assert isinstance(y, ember.Tensor) and y.shape == (2, 4, 5)
    np.testing.assert_allclose(y.detach().numpy(), a @ b, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    np.testing.assert_allclose(ta.grad.numpy(), np.ones((2, 4, 5), np.float32) @ b.T, rtol=1e-5, atol=1e-5)
    tb = ember.from_numpy(b).requires_grad_()
    ember.matmul(a[0], tb).sum().backward()
    np.testing.assert_allclose(tb.grad.numpy(), a[0].T @ np.ones((4, 5), np.float32), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="out= takes arrays"):
        ember.matmul(ta, b, out=np.empty((2, 4, 5), np.float32))
