"""In-place tensor ops as PyTorch's: ``x += y`` and ``add_``/``sub_``/``mul_``/``div_``/
``clamp_``/``fill_``/``copy_``/``zero_`` write into the tensor's memory (through a view into its
base), move its version counter, keep its dtype (an integer tensor += a float is an error), and
are refused in grad mode where the graph would miss them. Each expectation is written out, and
checked against PyTorch where it is installed."""

import numpy as np
import pytest

import ember

try:
    import torch
except ImportError:  # optional reference
    torch = None


def _dtype(lib, name):
    """The dtype called ``name`` in ``lib`` (ember takes NumPy's)."""
    return getattr(torch, name) if lib is torch else np.dtype(name)

# name, the in-place change, its result on [[1, 2], [3, 4]] (float32)
CHANGES = [
    ("+=", lambda x, lib: x.__iadd__(1), [[2, 3], [4, 5]]),
    ("-= row", lambda x, lib: x.__isub__(lib.tensor([1.0, 2.0])), [[0, 0], [2, 2]]),
    ("*=", lambda x, lib: x.__imul__(2), [[2, 4], [6, 8]]),
    ("/=", lambda x, lib: x.__itruediv__(2), [[0.5, 1], [1.5, 2]]),
    ("//=", lambda x, lib: x.__ifloordiv__(2), [[0, 1], [1, 2]]),
    ("%=", lambda x, lib: x.__imod__(3), [[1, 2], [0, 1]]),
    ("**=", lambda x, lib: x.__ipow__(2), [[1, 4], [9, 16]]),
    ("add_ alpha", lambda x, lib: x.add_(lib.tensor([[1.0], [2.0]]), alpha=2), [[3, 4], [7, 8]]),
    ("sub_", lambda x, lib: x.sub_(0.5), [[0.5, 1.5], [2.5, 3.5]]),
    ("mul_ float64", lambda x, lib: x.mul_(lib.tensor(2.0, dtype=_dtype(lib, "float64"))), [[2, 4], [6, 8]]),
    ("div_", lambda x, lib: x.div_(4), [[0.25, 0.5], [0.75, 1]]),
    ("clamp_", lambda x, lib: x.clamp_(2, 3), [[2, 2], [3, 3]]),
    ("fill_", lambda x, lib: x.fill_(7), [[7, 7], [7, 7]]),
    ("fill_ 0-d", lambda x, lib: x.fill_(lib.tensor(-1.0)), [[-1, -1], [-1, -1]]),
    ("copy_ broadcast", lambda x, lib: x.copy_(lib.tensor([5, 6])), [[5, 6], [5, 6]]),
    ("zero_", lambda x, lib: x.zero_(), [[0, 0], [0, 0]]),
]


@pytest.mark.parametrize("name, change, want", CHANGES, ids=[c[0] for c in CHANGES])
def test_in_place_ops_write_into_the_tensor(name, change, want):
    x = ember.tensor([[1.0, 2.0], [3.0, 4.0]])
    memory, version = x._data, x._version[0]
    assert change(x, ember) is x
    assert x._data is memory and x.dtype == np.float32 and x._version[0] > version
    np.testing.assert_allclose(x.numpy(), want)
    if torch is not None:
        t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        assert change(t, torch) is t and t.dtype == torch.float32
        np.testing.assert_allclose(x.numpy(), t.numpy())


def test_a_view_writes_through_to_its_base():
    b = ember.arange(6).float()
    v = b[0:2]
    v += 1
    b.reshape(2, 3)[1].mul_(10)
    assert b.tolist() == [1.0, 2.0, 2.0, 30.0, 40.0, 50.0]
    if torch is not None:
        t = torch.arange(6).float()
        u = t[0:2]
        u += 1
        t.reshape(2, 3)[1].mul_(10)
        assert t.tolist() == b.tolist()


def test_a_manual_sgd_step_under_no_grad_trains():
    ember.manual_seed(0)
    x, w_true = ember.randn(32, 3), ember.tensor([[1.0], [-2.0], [0.5]])
    y = x @ w_true
    w = ember.zeros(3, 1, requires_grad=True)
    first = None
    for _ in range(100):
        loss = ((x @ w - y) ** 2).mean()
        first = loss.item() if first is None else first
        w.grad = None
        loss.backward()
        with ember.no_grad():
            w -= 0.1 * w.grad
    assert w.is_leaf and w.requires_grad  # the same parameter, changed, not rebound
    assert loss.item() < first * 1e-3
    np.testing.assert_allclose(w.detach().numpy(), w_true.numpy(), atol=1e-2)


def test_in_place_changes_are_refused_where_a_gradient_would_miss_them():
    w = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad is being modified in place"):
        w += 1
    y = w * 2
    with pytest.raises(RuntimeError, match=r"grad_fn=<MulBackward>\) is being modified in place.*out-of-place op"):
        y.add_(1)
    with pytest.raises(RuntimeError, match="requires grad is being written into another in place.*out-of-place"):
        ember.zeros(3).copy_(w)
    assert w.tolist() == [1.0, 1.0, 1.0] and y.tolist() == [2.0, 2.0, 2.0]
    with ember.no_grad():  # there they work on anything
        w += 1
        y.mul_(w)
    assert w.tolist() == [2.0, 2.0, 2.0] and y.tolist() == [4.0, 4.0, 4.0]
    z = w * w  # saves w: a change to it afterwards is caught by backward
    with ember.no_grad():
        w.fill_(3.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.sum().backward()
    if torch is not None:
        t = torch.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            t += 1


@pytest.mark.parametrize("make, change, message", [
    (lambda lib: lib.tensor([1, 2]), lambda x: x.__iadd__(1.5), "result type float32 can't be cast to the desired "
                                                                 "output type int64"),
    (lambda lib: lib.tensor([4, 2]), lambda x: x.__itruediv__(2), "result type float32 can't be cast"),
    (lambda lib: lib.tensor([True]), lambda x: x.__iadd__(1), "result type int64 can't be cast to the desired "
                                                              "output type bool"),
    (lambda lib: lib.tensor([1, 2]), lambda x: x.clamp_(0.5, 1.5), "result type float32 can't be cast"),
    (lambda lib: lib.ones(2), lambda x: x.__iadd__(x.reshape(2, 1)), r"output with shape \[2\] doesn't match the "
                                                                     r"broadcast shape \[2, 2\]"),
], ids=["int += float", "int /= int", "bool += int", "int clamp_ float", "broadcast grows"])
def test_in_place_results_keep_the_tensor_dtype_and_shape(make, change, message):
    x = make(ember)
    before = x.tolist()
    with pytest.raises(RuntimeError, match=message):
        change(x)
    assert x.tolist() == before
    if torch is not None:
        with pytest.raises(RuntimeError):
            change(make(torch))


def test_in_place_dtype_conversions_that_pytorch_allows():
    cases = [  # make, change, result, dtype
        (lambda lib: lib.tensor([1, 2], dtype=_dtype(lib, "int32")), lambda x, lib: x.__iadd__(x.long()), [2, 4],
         "int32"),
        (lambda lib: lib.tensor([250], dtype=_dtype(lib, "uint8")), lambda x, lib: x.add_(10), [4], "uint8"),  # wraps
        (lambda lib: lib.tensor([1, 2]), lambda x, lib: x.fill_(2.7), [2, 2], "int64"),
        (lambda lib: lib.tensor([1, 2]), lambda x, lib: x.copy_(lib.tensor([1.5, -2.7])), [1, -2], "int64"),
        (lambda lib: lib.tensor([True, False]), lambda x, lib: x.__iand__(lib.tensor([False, False])), [False, False],
         "bool"),
    ]
    for make, change, want, dtype in cases:
        x = change(make(ember), ember)
        assert x.tolist() == want and x.dtype == np.dtype(dtype)
        if torch is not None:
            t = change(make(torch), torch)
            assert t.tolist() == want and str(t.dtype) == f"torch.{dtype}"


def test_fill_and_copy_check_their_values_and_broadcast_expands_stay_read_only():
    with pytest.raises(RuntimeError, match=r"fill_: value must be a number or a 0-d tensor, got a tensor of shape"):
        ember.ones(2).fill_(ember.tensor([3.0]))
    with pytest.raises(TypeError, match="fill_: value must be a number"):
        ember.ones(2).fill_("3")
    with pytest.raises(TypeError, match="copy_: src must be a Tensor, got list"):
        ember.ones(2).copy_([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"copy_: src of shape \(3,\) does not broadcast"):
        ember.ones(2).copy_(ember.ones(3))
    with pytest.raises(RuntimeError, match=r"read-only: an expand\(\)ed tensor"):
        ember.ones(1).expand(3).add_(1)
    same = ember.ones(2)
    same.expand(2)[0] = 5.0  # nothing repeated: a writable view, as PyTorch's
    assert same.tolist() == [5.0, 1.0]
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.ones(2).fill_(torch.tensor([3.0]))
        with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
            torch.ones(1).expand(3).add_(1)
        t = torch.ones(2)
        t.expand(2)[0] = 5.0
        assert t.tolist() == same.tolist()
