"""Tensor comparisons and the smaller parts of the Tensor API, against NumPy (and PyTorch's
results where it is installed): comparisons against tensors, numbers and arrays with
broadcasting, reflected operators, argmax, squeeze, dtype conversions and the errors users
meet first."""

import numpy as np
import pytest

import ember

try:
    import torch
except ImportError:  # optional reference
    torch = None

COMPARISONS = {
    "==": (lambda a, b: a == b, np.equal),
    "!=": (lambda a, b: a != b, np.not_equal),
    "<": (lambda a, b: a < b, np.less),
    "<=": (lambda a, b: a <= b, np.less_equal),
    ">": (lambda a, b: a > b, np.greater),
    ">=": (lambda a, b: a >= b, np.greater_equal),
}


@pytest.mark.parametrize("op", list(COMPARISONS))
def test_comparisons(rng, op):
    fn, ref = COMPARISONS[op]
    # Small integers as floats, so that equal elements occur and ties are tested.
    a = rng.integers(-2, 3, (4, 5)).astype(np.float32)
    b = rng.integers(-2, 3, (4, 5)).astype(np.float32)
    row = rng.integers(-2, 3, (1, 5)).astype(np.float32)
    x = ember.tensor(a, requires_grad=True)
    for other, want in [(ember.tensor(b), ref(a, b)), (ember.tensor(row), ref(a, row)), (1.0, ref(a, 1.0)),
                        (0, ref(a, 0)), (b, ref(a, b)), (row[0], ref(a, row[0]))]:
        got = fn(x, other)
        assert isinstance(got, ember.Tensor) and got.dtype == np.bool_ and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want)
        assert not got.requires_grad and got.grad_fn is None  # comparisons record no graph
        if torch is not None:
            t_other = torch.from_numpy(np.asarray(other.numpy() if isinstance(other, ember.Tensor) else other))
            np.testing.assert_array_equal(got.numpy(), fn(torch.from_numpy(a), t_other).numpy())
    # A number on the left: Python reflects the comparison onto the tensor.
    np.testing.assert_array_equal(fn(1.0, ember.tensor(a)).numpy(), ref(1.0, a))
    # Masks index and count as NumPy's do.
    mask = fn(ember.tensor(a), 0.0)
    assert int(mask.numpy().sum()) == int(ref(a, 0.0).sum())
    np.testing.assert_array_equal(ember.tensor(a)[mask].numpy(), a[ref(a, 0.0)])


def test_tensors_stay_hashable_despite_elementwise_eq():
    a, b = ember.zeros(2), ember.zeros(2)
    assert len({a, b, a}) == 2 and {a: 1}[a] == 1


def test_reflected_operators_argmax_and_squeeze(rng):
    a = rng.uniform(0.5, 2.0, (3, 4))
    x = ember.tensor(a, requires_grad=True)
    y = 2.0**x
    np.testing.assert_allclose(y.detach().numpy(), 2.0**a, rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.log(2.0) * 2.0**a, rtol=1e-12)
    m = rng.standard_normal((5, 3))
    np.testing.assert_allclose((m @ ember.tensor(a[:3])).numpy(), m @ a[:3], rtol=1e-12)  # array @ tensor
    np.testing.assert_allclose(ember.tensor(m).matmul(ember.tensor(a[:3])).numpy(), m @ a[:3], rtol=1e-12)
    assert ember.tensor(m).argmax().item() == int(np.argmax(m))
    np.testing.assert_array_equal(ember.tensor(m).argmax(dim=1).numpy(), m.argmax(axis=1))
    assert ember.tensor(m).argmax(dim=0, keepdim=True).shape == (1, 3)
    s = ember.tensor(rng.standard_normal((1, 3, 1, 2)))
    assert s.squeeze().shape == (3, 2) and s.squeeze(0).shape == (3, 1, 2) and s.squeeze(1).shape == (1, 3, 1, 2)


@pytest.mark.parametrize("dtype, want", [(np.float16, np.float32), (np.uint16, np.int64), (np.int16, np.int64),
                                         (np.float64, np.float64), (np.int32, np.int32), (np.uint8, np.uint8)])
def test_constructor_dtypes(rng, dtype, want):
    a = rng.integers(0, 100, 6).astype(dtype)
    t = ember.Tensor(a)
    assert t.dtype == want
    np.testing.assert_array_equal(t.numpy(), a.astype(want))


def test_the_errors_users_meet_first():
    with pytest.raises(TypeError, match="unsupported dtype complex128"):
        ember.Tensor(np.ones(2, np.complex128))
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to Scalar"):
        ember.zeros(2).item()
    with pytest.raises(ValueError, match="needs a copy"):
        ember.zeros(2).__array__(np.float64, copy=False)
    with pytest.raises(TypeError, match="len"):
        len(ember.tensor(1.0))
    with pytest.raises(RuntimeError, match="not a leaf"):
        (ember.zeros(2, requires_grad=True) * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        ember.arange(3).requires_grad_()
    with pytest.raises(TypeError, match="from_numpy needs a numpy.ndarray, got list"):
        ember.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="at least one argument must be a Tensor"):
        ember.maximum(1.0, 2.0)


def test_interop_and_small_factories(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = ember.from_numpy(a)
    assert t.__dlpack_device__() == a.__dlpack_device__()
    back = np.from_dlpack(t)
    assert np.shares_memory(back, a)
    np.testing.assert_array_equal(np.asarray(t, dtype=np.float64), a.astype(np.float64))
    assert np.array(t, copy=True) is not a and np.array_equal(np.array(t, copy=True), a)  # (asarray has copy= from NumPy 2)
    r = ember.randint(5, size=(1000,), generator=ember.Generator(int(rng.integers(2**31)))).numpy()
    assert r.min() >= 0 and r.max() <= 4 and len(np.unique(r)) == 5  # randint(high): from 0


def test_pytorch_habits_size_casts_and_inference_mode(rng):
    t = ember.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    assert t.size == 6 and t.size() == (2, 3) and t.size(1) == 3 and t.size(-2) == 2  # NumPy's and PyTorch's
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        t.size(2)
    d = t.double()
    assert d.dtype == np.float64 and t.float() is t and t.type_as(d).dtype == np.float64
    (d * d).sum().backward()  # the cast is differentiable, the gradient in the input's dtype
    assert t.grad.dtype == np.float32
    np.testing.assert_allclose(t.grad.numpy(), 2 * t.detach().numpy(), rtol=1e-6)
    labels = ember.tensor([0.0, 2.7, -1.5])
    assert labels.long().dtype == np.int64 and labels.long().tolist() == [0, 2, -1]
    assert labels.int().dtype == np.int32 and not t.long().requires_grad and labels.bool().tolist() == [False, True, True]
    with ember.inference_mode():
        assert not (t * 2).requires_grad
    with ember.no_grad(), ember.inference_mode(False):
        assert (t * 2).requires_grad

    @ember.inference_mode()
    def predict(x):
        return x * 2

    assert not predict(t).requires_grad and (t * 2).requires_grad


def test_copies_layouts_and_dims(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    x = ember.tensor(a, requires_grad=True)
    c = x.clone()
    assert c.grad_fn.name() == "CloneBackward" and not np.shares_memory(c.detach().numpy(), a)
    (c * ember.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert x.grad.tolist() == [[1.0, 2.0, 3.0]] * 2
    t = x.detach().mT
    assert not t._data.flags.c_contiguous and t.contiguous()._data.flags.c_contiguous
    assert t.contiguous().tolist() == a.T.tolist() and x.contiguous() is x
    assert x.dim() == 2 and ember.tensor(1.0).dim() == 0 and ember.zeros(2, 3, 4).mT.shape == (2, 4, 3)
    with pytest.raises(RuntimeError, match="mT is only supported on matrices or batches of matrices, got a 1-D"):
        ember.zeros(2).mT
    s = ember.zeros(1, 2, 1)
    assert s.squeeze((0, 2)).shape == (2,) and s.squeeze((0, 1)).shape == (2, 1) and s.squeeze([-1]).shape == (1, 2)
    if torch is not None:
        ts = torch.zeros(1, 2, 1)
        assert ts.squeeze((0, 2)).shape == (2,) and ts.squeeze((0, 1)).shape == (2, 1)
        assert torch.zeros(2, 3, 4).mT.shape == (2, 4, 3) and torch.tensor(a).mT.contiguous().is_contiguous()


def test_repeat_tiles_and_is_differentiable(rng):
    a = rng.standard_normal((2, 3))
    x = ember.tensor(a, requires_grad=True)
    r = x.repeat(2, 1, 2)
    np.testing.assert_array_equal(r.detach().numpy(), np.tile(a, (2, 1, 2)))
    r._data[0, 0, 0] = 99.0  # a copy: the source is untouched
    assert x[0, 0].item() == a[0, 0] and x.repeat(1, 1).tolist() == a.tolist()
    assert not np.shares_memory(x.repeat(1, 1).detach().numpy(), x.detach().numpy())
    w = ember.tensor(rng.standard_normal((2, 3, 6)))
    assert ember.autograd.gradcheck(lambda t: t.repeat(2, 3, 2) * w, [ember.tensor(a[:1], requires_grad=True)])
    (x.repeat(2, 3) * 1).sum().backward()
    assert x.grad.tolist() == [[6.0] * 3] * 2
    with pytest.raises(RuntimeError, match="repeat: 1 repeat sizes for a tensor of 2 dims"):
        x.repeat(2)
    if torch is not None:
        assert torch.tensor([1, 2]).repeat(2, 2).tolist() == ember.tensor([1, 2]).repeat(2, 2).tolist()
        np.testing.assert_array_equal(torch.tensor(a).repeat(2, 1, 2).numpy(), np.tile(a, (2, 1, 2)))
        with pytest.raises(RuntimeError):
            torch.tensor(a).repeat(2)


def test_to_type_and_variance_arguments():
    x = ember.tensor([1.0, 2.0, 4.0], requires_grad=True)
    for y in (x.to(np.float64), x.to("cpu", np.float64), x.to(dtype="float64"), x.to(ember.zeros(1, dtype=np.float64)),
              x.to(device="cpu:0", dtype=np.float64)):
        assert y.dtype == np.float64 and y.device == "cpu" and y.grad_fn is not None
    assert x.to("cpu") is x and x.to(np.float32) is x
    assert x.type() == "float32" and ember.tensor([1]).type() == "int64"
    np.testing.assert_allclose(x.var(unbiased=False).item(), 14 / 9, rtol=1e-6)
    np.testing.assert_allclose(x.var(False).item(), 14 / 9, rtol=1e-6)
    np.testing.assert_allclose(x.var().item(), 7 / 3, rtol=1e-6)
    np.testing.assert_allclose(ember.tensor([[1.0, 2.0, 4.0]]).std(1, False).tolist(), [(14 / 9) ** 0.5], rtol=1e-6)
    np.testing.assert_allclose(x.std(0, True, True).tolist(), [(7 / 3) ** 0.5], rtol=1e-6)
    with pytest.raises(TypeError, match="var: give unbiased or correction, not both"):
        x.var(unbiased=False, correction=0)
    if torch is not None:
        t = torch.tensor([1.0, 2.0, 4.0])
        assert t.to("cpu", torch.float64).dtype == torch.float64
        np.testing.assert_allclose([t.var(unbiased=False).item(), t.var(False).item(),
                                    torch.tensor([[1.0, 2.0, 4.0]]).std(1, False).item(), t.std(0, True, True).item()],
                                   [14 / 9, 14 / 9, (14 / 9) ** 0.5, (7 / 3) ** 0.5], rtol=1e-6)


def test_tensors_pickle_and_copy_with_their_autograd_state():
    import copy
    import pickle

    p = ember.nn.Parameter(ember.tensor([1.0, 2.0]))
    p.grad = ember.tensor([0.5, 0.5])
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        assert type(q) is ember.nn.Parameter and q.requires_grad and q.is_leaf
        assert q.tolist() == [1.0, 2.0] and q.grad.tolist() == [0.5, 0.5]
