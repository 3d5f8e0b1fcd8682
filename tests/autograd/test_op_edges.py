"""Differentiable ops at their edges, each against an exact expectation and, where PyTorch is
installed, against PyTorch: values a forward keeps for backward that a caller changes in place
afterwards, reductions over dim=(), matrix products with 1-D operands, softmax of a 0-d tensor,
gradients at NaN and at ties, and integer inputs to activations."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # optional reference
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (reference) is not installed")
NAN, INF = float("nan"), float("inf")
INPLACE = "modified by an in-place operation"


def host(t):
    return t.detach().cpu().numpy()


def f64(a, requires_grad=True):
    return ember.tensor(np.asarray(a, np.float64), requires_grad=requires_grad)


# ----------------------------------------------------------------------- values changed after the forward


@pytest.mark.parametrize("as_array", [False, True], ids=["tensor", "array"])
def test_clamp_bounds_changed_after_forward_do_not_move_the_gradient(device, as_array):
    x = ember.tensor([0.5, 1.5, 2.5], requires_grad=True)
    lo, hi = ember.zeros(3), ember.full((3,), 3.0)
    if as_array:
        lo, hi = lo._data, hi._data
    y = x.clamp(lo, hi).sum()
    lo[...] = 2.0  # every element below the new lower bound, or above the new upper one
    hi[...] = 1.0
    y.backward()
    assert host(x.grad).tolist() == [1.0, 1.0, 1.0]  # the bounds as they were at the forward


@needs_torch
def test_clamp_gradient_with_tensor_bounds_matches_torch():
    a, lo, hi = [0.5, -1.0, 2.5, 1.0, NAN], [0.0, 0.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 3.0, 1.0]
    x = f64(a)
    x.clamp(f64(lo, False), f64(hi, False)).sum().backward()
    tx = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tx.clamp(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)).sum().backward()
    np.testing.assert_array_equal(host(x.grad), tx.grad.numpy())


LOGITS = [[1.0, 2.0, 0.5], [0.1, -1.0, 3.0], [0.0, 0.3, -0.2]]
TARGETS = [0, 2, 1]
WEIGHT = [1.0, 2.0, 3.0]


def test_cross_entropy_weight_tensor_changed_in_place_is_caught(device):
    z = ember.tensor(LOGITS, requires_grad=True)
    w = ember.tensor(WEIGHT)
    loss = F.cross_entropy(z, ember.tensor(TARGETS), weight=w)
    w[...] = 0.0
    w[0] = 5.0
    with pytest.raises(RuntimeError, match=INPLACE):
        loss.backward()
    assert not w.requires_grad and loss.requires_grad


def test_cross_entropy_weight_array_changed_in_place_does_not_move_the_gradient(device):
    z, z_ref = ember.tensor(LOGITS, requires_grad=True), ember.tensor(LOGITS, requires_grad=True)
    w = ember.tensor(WEIGHT)._data  # an array on the test's device, no version counter
    loss = F.cross_entropy(z, ember.tensor(TARGETS), weight=w)
    w[...] = 0.0
    w[0] = 5.0
    loss.backward()
    F.cross_entropy(z_ref, ember.tensor(TARGETS), weight=ember.tensor(WEIGHT)).backward()
    np.testing.assert_array_equal(host(z.grad), host(z_ref.grad))


def test_max_pool_indices_changed_in_place_are_caught(device):
    x = ember.tensor(np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4), requires_grad=True)
    y, indices = F.max_pool2d(x, 2, return_indices=True)
    y.sum().backward(retain_graph=True)
    assert np.flatnonzero(host(x.grad)).tolist() == host(indices).ravel().tolist() == [5, 7, 13, 15]
    indices[...] = 0
    with pytest.raises(RuntimeError, match=INPLACE):
        y.sum().backward()


@needs_torch
def test_torch_also_refuses_changed_weight_and_indices():
    z = torch.tensor(LOGITS, requires_grad=True)
    w = torch.tensor(WEIGHT)
    loss = TF.cross_entropy(z, torch.tensor(TARGETS), weight=w)
    w[...] = 0.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    y, indices = TF.max_pool2d(torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_(), 2, return_indices=True)
    indices[...] = 0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@needs_torch
def test_cross_entropy_weight_gradient_matches_torch():
    z = ember.tensor(LOGITS, requires_grad=True)
    F.cross_entropy(z, ember.tensor(TARGETS), weight=ember.tensor(WEIGHT), label_smoothing=0.1).backward()
    tz = torch.tensor(LOGITS, requires_grad=True)
    TF.cross_entropy(tz, torch.tensor(TARGETS), weight=torch.tensor(WEIGHT), label_smoothing=0.1).backward()
    np.testing.assert_allclose(host(z.grad), tz.grad.numpy(), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------- reductions over dim=()

REDUCTIONS = {
    "sum": np.sum,
    "mean": np.mean,
    "amax": np.max,
    "amin": np.min,
    "logsumexp": lambda a: np.log(np.exp(a).sum()),
    "var": lambda a: a.var(ddof=1),
    "std": lambda a: a.std(ddof=1),
}


@pytest.mark.parametrize("keepdim", [False, True], ids=["", "keepdim"])
@pytest.mark.parametrize("dim", [(), []], ids=["tuple", "list"])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reducing_over_no_dims_reduces_over_all(device, rng, name, dim, keepdim):
    a = rng.standard_normal((2, 3))
    x = f64(a)
    fn = lambda t: getattr(t, name)(dim=dim, keepdim=keepdim)  # noqa: E731
    out = fn(x)
    assert out.shape == ((1, 1) if keepdim else ())
    np.testing.assert_allclose(host(out).reshape(()), REDUCTIONS[name](a), rtol=1e-12)
    assert gradcheck(fn, [x])


@needs_torch
@pytest.mark.parametrize("keepdim", [False, True], ids=["", "keepdim"])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reducing_over_no_dims_matches_torch(rng, name, keepdim):
    a = rng.standard_normal((2, 3))
    x = f64(a)
    out = getattr(x, name)(dim=(), keepdim=keepdim)
    out.backward(ember.ones_like(out))
    # PyTorch 2.13's logsumexp over dim=() fails to write its result unless it keeps the dims
    # (then it reduces over all of them): compare with that one, its dims dropped.
    kept = name == "logsumexp" and not keepdim
    tout = getattr(torch.tensor(a), name)(dim=(), keepdim=keepdim or kept)
    assert out.shape == (() if kept else tuple(tout.shape))
    np.testing.assert_allclose(host(out).reshape(tout.shape), tout.numpy(), rtol=1e-12)
    # Its var and std over dim=() give the value over all dims but a gradient divided by
    # 1 - correction instead of n - correction (inf, for the default correction): the gradient
    # to compare with is that of dim=None, the same function.
    tx = torch.tensor(a, requires_grad=True)
    getattr(tx, name)(dim=None if name in ("var", "std") else (), keepdim=True).sum().backward()
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------- matrix products with 1-D operands

VECTOR_PRODUCTS = [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                   ((2, 1, 3, 4), (4,)), ((4,), (5, 2, 4, 3))]


@pytest.mark.parametrize("sa, sb", VECTOR_PRODUCTS, ids=[f"{a}@{b}" for a, b in VECTOR_PRODUCTS])
def test_matmul_with_1d_operands_gradcheck(device, rng, sa, sb):
    a, b = f64(rng.standard_normal(sa)), f64(rng.standard_normal(sb))
    assert gradcheck(lambda p, q: p @ q, [a, b])
    for needs in ((True, False), (False, True)):  # one side's gradient alone
        p, q = f64(host(a), needs[0]), f64(host(b), needs[1])
        (p @ q).sum().backward()
        assert (p.grad is None) != needs[0] and (q.grad is None) != needs[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_dot_vector_gradient_is_the_other_vector(device, rng, dtype):
    a = ember.tensor(rng.standard_normal(5).astype(dtype), requires_grad=True)
    b = ember.tensor(rng.standard_normal(5).astype(dtype), requires_grad=True)
    out = a @ b
    assert out.shape == ()
    out.backward()
    np.testing.assert_array_equal(host(a.grad), host(b))
    np.testing.assert_array_equal(host(b.grad), host(a))


@needs_torch
@pytest.mark.parametrize("sa, sb", VECTOR_PRODUCTS, ids=[f"{a}@{b}" for a, b in VECTOR_PRODUCTS])
def test_matmul_with_1d_operands_matches_torch(rng, sa, sb):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = f64(a) @ f64(b)
    g = rng.standard_normal(out.shape)
    x, y = f64(a), f64(b)
    (x @ y).backward(f64(g, False))
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (tx @ ty).backward(torch.tensor(g))
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(y.grad), ty.grad.numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------- softmax of a 0-d tensor

SOFTMAXES = {
    "softmax": (lambda t: t.softmax(0), 1.0),
    "F.softmax": (lambda t: F.softmax(t, dim=-1), 1.0),
    "log_softmax": (lambda t: t.log_softmax(-1), 0.0),
    "F.log_softmax": (lambda t: F.log_softmax(t, dim=0), 0.0),
}


@pytest.mark.parametrize("name", SOFTMAXES)
def test_softmax_of_a_0d_tensor(device, name):
    fn, value = SOFTMAXES[name]
    x = f64(3.0)
    y = fn(x)
    assert y.shape == () and host(y) == value and y.grad_fn is not None
    y.backward()
    assert host(x.grad) == 0.0
    assert gradcheck(fn, [x])
    with np.errstate(invalid="ignore"):  # x - max(x) is NaN there, as in PyTorch
        for special in (INF, -INF, NAN):
            assert np.isnan(host(fn(f64(special))))


@needs_torch
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_of_a_0d_tensor_matches_torch(name):
    for v in (3.0, -2.5, INF, -INF, NAN):
        x, tx = f64(v), torch.tensor(v, dtype=torch.float64, requires_grad=True)
        with np.errstate(invalid="ignore"):
            y, ty = getattr(x, name)(0), getattr(torch, name)(tx, 0)
        y.backward()
        ty.backward()
        np.testing.assert_array_equal(host(y), ty.detach().numpy())
        np.testing.assert_array_equal(host(x.grad), tx.grad.numpy())


# ----------------------------------------------------------------------- gradients at NaN and at ties

A = [NAN, 1.0, NAN, 2.0, 3.0, -1.0]
B = [0.5, NAN, NAN, 2.0, 1.0, 4.0]
G = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
# PyTorch's: a side gets all of g unless it loses, half of it at a tie; NaN loses to nothing
EXTREMA = {
    "maximum": ([1.0, 2.0, 4.0, 4.0, 16.0, 0.0], [1.0, 2.0, 4.0, 4.0, 0.0, 32.0]),
    "minimum": ([1.0, 2.0, 4.0, 4.0, 0.0, 32.0], [1.0, 2.0, 4.0, 4.0, 16.0, 0.0]),
}


@pytest.mark.parametrize("name", EXTREMA)
def test_maximum_minimum_gradients_at_nan_and_ties(device, name):
    a, b = f64(A), f64(B)
    getattr(ember, name)(a, b).backward(f64(G, False))
    assert host(a.grad).tolist() == EXTREMA[name][0]
    assert host(b.grad).tolist() == EXTREMA[name][1]


def test_abs_gradient_is_zero_at_zero_and_nan(device):
    x = f64([NAN, 0.0, -0.0, 2.0, -3.0, INF, -INF])
    x.abs().backward(f64([5.0] * 7, False))
    assert host(x.grad).tolist() == [0.0, 0.0, 0.0, 5.0, -5.0, 5.0, -5.0]


@needs_torch
def test_nan_and_tie_gradients_match_torch():
    for name in EXTREMA:
        a, b = f64(A), f64(B)
        getattr(ember, name)(a, b).backward(f64(G, False))
        ta, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (A, B))
        getattr(torch, name)(ta, tb).backward(torch.tensor(G, dtype=torch.float64))
        np.testing.assert_array_equal(host(a.grad), ta.grad.numpy())
        np.testing.assert_array_equal(host(b.grad), tb.grad.numpy())
    values = [NAN, 0.0, -0.0, 2.0, -3.0, INF, -INF]
    x, tx = f64(values), torch.tensor(values, dtype=torch.float64, requires_grad=True)
    x.abs().sum().backward()
    tx.abs().sum().backward()
    np.testing.assert_array_equal(host(x.grad), tx.grad.numpy())


# ----------------------------------------------------------------------- integer inputs to activations

INTEGER_INPUTS = {"int64": ([1, -2, 3, 0], np.int64), "int32": ([4, -1], np.int32), "uint8": ([1, 200], np.uint8),
                  "bool": ([True, False], np.bool_)}
FLOAT_RESULTS = {"sigmoid": (F.sigmoid, lambda a: 1 / (1 + np.exp(-a))), "tanh": (F.tanh, np.tanh)}


@pytest.mark.parametrize("kind", INTEGER_INPUTS)
@pytest.mark.parametrize("name", FLOAT_RESULTS)
def test_sigmoid_and_tanh_of_integers_are_float32(device, name, kind):
    values, dtype = INTEGER_INPUTS[kind]
    fn, ref = FLOAT_RESULTS[name]
    for y in (fn(ember.tensor(np.array(values, dtype))), getattr(ember.tensor(np.array(values, dtype)), name)()):
        assert y.dtype == np.float32
        np.testing.assert_allclose(host(y), ref(np.array(values, np.float64)), rtol=1e-6)


INTEGER_REFUSED = {"silu": F.silu, "leaky_relu": F.leaky_relu, "softmax": lambda t: F.softmax(t, dim=0),
                   "log_softmax": lambda t: F.log_softmax(t, dim=0), "gelu": F.gelu}


@pytest.mark.parametrize("name", INTEGER_REFUSED)
def test_activations_without_an_integer_form_refuse_integers(device, name):
    with pytest.raises(TypeError, match=name):
        INTEGER_REFUSED[name](ember.tensor([1, -2, 3]))


@needs_torch
def test_integer_activations_match_torch():
    for values, dtype in INTEGER_INPUTS.values():
        t = torch.tensor(np.array(values, dtype))
        for name, (fn, _) in FLOAT_RESULTS.items():
            y, ty = fn(ember.tensor(np.array(values, dtype))), getattr(torch, name)(t)
            assert ty.dtype == torch.float32 and y.dtype == np.float32
            np.testing.assert_allclose(host(y), ty.numpy(), rtol=1e-6)
    long = torch.tensor([1, -2, 3])
    for fn in (TF.silu, TF.leaky_relu, TF.gelu, lambda t: TF.softmax(t, dim=0), lambda t: TF.log_softmax(t, dim=0)):
        with pytest.raises((NotImplementedError, RuntimeError)):
            fn(long)
