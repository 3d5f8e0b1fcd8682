"""Tensor creation: factories, dtypes, seeded generators."""

import numpy as np
import pytest

import ember


def test_factories():
    assert ember.zeros(2, 3).shape == (2, 3) and ember.zeros((2, 3)).dtype == np.float32
    assert (ember.ones(4, dtype=np.float64).numpy() == 1).all() and ember.ones(4, dtype=np.float64).dtype == np.float64
    assert (ember.full((2, 2), 7.5).numpy() == 7.5).all()
    assert ember.empty(3, 1).shape == (3, 1)
    assert ember.arange(5).tolist() == [0, 1, 2, 3, 4] and ember.arange(5).dtype == np.int64
    np.testing.assert_allclose(ember.arange(0, 1, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(ember.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(ember.eye(3).numpy(), np.eye(3))
    t = ember.randn(5, 4, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    for like in (ember.zeros_like, ember.ones_like, ember.empty_like, ember.rand_like, ember.randn_like):
        assert like(t).shape == (5, 4) and like(t).dtype == np.float32 and not like(t).requires_grad
    assert ember.full_like(t, 2.0).tolist()[0][0] == 2.0


def test_seeded_random_numbers():
    ember.manual_seed(123)
    a = ember.randn(3, 3).numpy()
    ember.manual_seed(123)
    np.testing.assert_array_equal(ember.randn(3, 3).numpy(), a)
    g1, g2 = ember.Generator(5), ember.Generator(5)
    np.testing.assert_array_equal(ember.rand(4, generator=g1).numpy(), ember.rand(4, generator=g2).numpy())
    r = ember.randint(0, 10, (1000,), generator=g1).numpy()
    assert r.dtype == np.int64 and r.min() >= 0 and r.max() <= 9 and len(np.unique(r)) == 10
    u = ember.rand(10000, generator=g1).numpy()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02


def test_setitem_bumps_the_version_and_split_checks_sizes():
    x = ember.zeros(3)
    x[1] = 5.0
    assert x.tolist() == [0.0, 5.0, 0.0]
    with pytest.raises(ValueError, match="do not add up"):
        ember.zeros(5).split([2, 2])
    with pytest.raises(ValueError, match="is not a permutation"):
        ember.zeros(2, 3).permute(0, 0)


def test_truth_of_a_tensor_is_that_of_its_one_element():
    assert not ember.tensor([0.0]) and ember.tensor([2.0]) and ember.tensor(3.0)
    assert not (ember.tensor([1.0]) > 5)  # `if loss > best:` takes the branch the value says
    assert (ember.tensor([1.0, 2.0]).sum() > 0) and not (ember.tensor([1.0, 2.0]).sum() < 0)
    with pytest.raises(RuntimeError, match="truth value of a tensor of 2 elements is ambiguous"):
        bool(ember.tensor([0.0, 0.0]))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(ember.zeros(0))


def test_dims_out_of_range_are_errors_not_wrapped():
    """PyTorch's rule: a dim must lie in [-ndim, ndim) (one more for unsqueeze); never taken modulo."""
    a = ember.zeros(2, 3)
    for call, error, match in [
        (lambda: a.unsqueeze(0).squeeze(5), IndexError, r"squeeze: dim 5 is out of range"),
        (lambda: a.unsqueeze(7), IndexError, r"unsqueeze: dim 7 is out of range .* \[-3, 2\]"),
        (lambda: a.flatten(1, 0), ValueError, r"flatten: start_dim 1 comes after end_dim 0"),
        (lambda: a.flatten(0, 4), IndexError, r"flatten: dim 4"),
        (lambda: a.permute(0, 3), IndexError, r"permute: dim 3"),
        (lambda: a.expand(-1, 2, 3), ValueError, r"expand: -1 in a new leading dimension"),
        (lambda: a.expand(3), ValueError, r"expand: .* fewer dimensions"),
    ]:
        with pytest.raises(error, match=match):
            call()
    assert a.unsqueeze(-3).shape == (1, 2, 3) and a.unsqueeze(2).shape == (2, 3, 1)
    assert a.permute(-1, 0).shape == (3, 2) and ember.zeros(1, 3).expand(4, 1, -1).shape == (4, 1, 3)
    assert ember.tensor(3.0).unsqueeze(-1).shape == (1,) and ember.tensor(3.0).squeeze(0).shape == ()


try:
    import torch
except ImportError:  # optional reference
    torch = None


def test_unsupported_dtypes_are_refused_not_swapped():
    for make in (lambda: ember.zeros(2, dtype="float16"), lambda: ember.ones(2, dtype=np.int16),
                 lambda: ember.tensor([1, 2], dtype=np.uint16), lambda: ember.zeros(2).type(np.float16),
                 lambda: ember.zeros(2).half(), lambda: ember.arange(3, dtype=np.int16)):
        with pytest.raises(TypeError, match=r"dtype (float16|int16|uint16) is not supported \(Ember's dtypes: "
                                            r"float32, float64, int64, int32, uint8, int8, bool\)"):
            make()
    with pytest.raises(TypeError, match=r"from_numpy \(which never copies\): dtype float16 is not supported"):
        ember.from_numpy(np.ones(2, np.float16))
    with pytest.raises(TypeError, match=r"from_dlpack \(which never copies\): dtype int16 is not supported"):
        ember.from_dlpack(np.ones(2, np.int16))
    with pytest.raises(TypeError, match="'complex' is not a dtype|not supported"):
        ember.zeros(2, dtype="complex")
    assert ember.zeros(2, dtype=float).dtype == np.float64 and ember.zeros(2, dtype="int32").dtype == np.int32


@pytest.mark.parametrize("make", [lambda lib, d: lib.rand(2, dtype=d), lambda lib, d: lib.randn(2, dtype=d),
                                  lambda lib, d: lib.rand_like(lib.tensor([1, 2])),
                                  lambda lib, d: lib.randn_like(lib.tensor([1, 2]))],
                         ids=["rand", "randn", "rand_like", "randn_like"])
def test_random_reals_need_a_floating_dtype(make):
    with pytest.raises(TypeError, match="dtype must be floating .* got int64; use randint"):
        make(ember, np.int64)
    if torch is not None:
        with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
            make(torch, torch.int64)


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy.ndarrays")
def test_tensor_infers_pytorch_dtypes_from_python_and_numpy_data():
    cases = [  # data, the dtype PyTorch gives it
        (1.5, "float32"), ([1, 2], "int64"), ([True, 1], "int64"), (np.float64(1.5), "float64"),
        (np.array(1.5), "float64"), ([np.float64(1.5)], "float64"), ([1.0, np.float64(2.0)], "float64"),
        ([np.float32(1.5)], "float32"), (np.int32(1), "int32"), ([np.ones(2), np.ones(2)], "float64"),
        ([1.5, 2**70], "float32"),
    ]
    for data, want in cases:
        assert ember.tensor(data).dtype == np.dtype(want), data
        if torch is not None:
            assert str(torch.tensor(data).dtype) == f"torch.{want}", data
    assert ember.tensor([0.1], dtype=np.float64).item() == 0.1  # no detour through float32
    for data in (2**63, [2**63, 1], -(2**63) - 1):
        with pytest.raises(OverflowError, match="does not fit in a 64-bit integer"):
            ember.tensor(data)
        if torch is not None:
            with pytest.raises((OverflowError, ValueError, RuntimeError), match="(?i)overflow"):
                torch.tensor(data)


def test_sizes_and_dims_take_numpy_integers_and_size_keywords():
    n = np.int64(3)
    x = ember.arange(6).float()
    got = [ember.zeros(n).shape, ember.ones((n, np.int32(2))).shape, ember.empty(n, 2).shape,
           ember.rand(n).shape, ember.full((n,), 1.0).shape, x.reshape(np.int64(6)).shape,
           x.view(np.int64(2), n).shape, x.reshape(2, 3).sum(dim=np.int64(1)).tolist(),
           x.reshape(2, 3).mean(dim=(np.int64(0),)).tolist(), x.reshape(2, 3).permute(np.int64(1), 0).shape,
           x.reshape(1, 6).expand(n, -1).shape, x.unsqueeze(np.int64(0)).shape,
           x.reshape(2, 3).amax(np.int64(1)).tolist(),
           ember.zeros(size=(2, 3)).shape, ember.rand(size=[2]).shape, ember.zeros(2, device="cpu:0").device]
    assert got == [(3,), (3, 2), (3, 2), (3,), (3,), (6,), (2, 3), [3.0, 12.0], [1.5, 2.5, 3.5], (3, 2), (3, 6),
                   (1, 6), [2.0, 5.0], (2, 3), (2,), "cpu"]
    assert ember.ones(2).to("cpu:0").device == "cpu"
    with pytest.raises(TypeError, match="zeros: sizes must be ints or one sequence of ints"):
        ember.zeros(2.0)
    with pytest.raises(TypeError, match="zeros: give the sizes positionally or as size=, not both"):
        ember.zeros(2, size=(2,))
    if torch is not None:
        t = torch.arange(6).float()
        assert [torch.zeros(n).shape, t.reshape(np.int64(6)).shape, t.reshape(2, 3).sum(dim=np.int64(1)).tolist(),
                torch.zeros(size=(2, 3)).shape, str(torch.zeros(2, device="cpu:0").device)] == \
            [(3,), (6,), [3.0, 12.0], (2, 3), "cpu"]
