"""Where Ember's tensors follow PyTorch's rules rather than NumPy's: type promotion, the dtype of
``full``, ``max``/``min`` along a dim (values and indices), the gradients at the edges (NaN
extremes, ``x ** 0`` at 0), ``clamp`` of integers, the checks of ``split``/``chunk``/``cat``/
``stack`` and dims, and the grad-mode and autocast decorators (bare, on generators, on
coroutines). Each expectation is written out, and checked against PyTorch where it is
installed."""

import asyncio
import threading

import numpy as np
import pytest

import ember

try:
    import torch
except ImportError:  # optional reference
    torch = None

INT = ember.tensor([1, 2, 3])
FLOAT = ember.tensor([1.0, 2.0, 4.0])
PROMOTIONS = [  # name, op on tensors, dtype Ember and PyTorch give
    ("int + float", lambda i, f, lib: i + 1.5, np.float32),
    ("float - int", lambda i, f, lib: 1.5 - i, np.float32),
    ("int / int", lambda i, f, lib: i / 2, np.float32),
    ("int / int tensor", lambda i, f, lib: i / i, np.float32),
    ("int rdiv", lambda i, f, lib: 3 / i, np.float32),
    ("int * float tensor", lambda i, f, lib: i * f, np.float32),
    ("float tensor * int", lambda i, f, lib: f * i, np.float32),
    ("float / int tensor", lambda i, f, lib: f / i, np.float32),
    ("float ** int tensor", lambda i, f, lib: f**i, np.float32),
    ("int + int", lambda i, f, lib: i + 1, np.int64),
    ("int * bool tensor", lambda i, f, lib: i * (i > 1), np.int64),
    ("maximum(int, float)", lambda i, f, lib: lib.maximum(i, f), np.float32),
    ("where(int, float)", lambda i, f, lib: lib.where(i > 1, i, f), np.float32),
    ("float + double", lambda i, f, lib: f + f.double(), np.float64),
]


def _torch(t):
    return torch.from_numpy(np.array(t.numpy()))


@pytest.mark.parametrize("name, op, want", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_type_promotion_follows_pytorch(name, op, want):
    got = op(INT, FLOAT, ember)
    assert got.dtype == want, name
    expected = op(INT.double(), FLOAT.double(), ember)  # the values, computed in float64
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
    if torch is not None:
        assert str(op(_torch(INT), _torch(FLOAT), torch).dtype) == f"torch.{np.dtype(want).name}", name


def test_a_float_gradient_flows_through_promotion():
    w = ember.tensor([0.5, -1.0, 2.0], requires_grad=True)
    (w * INT).sum().backward()  # the int side is cast, the float side keeps its graph
    np.testing.assert_array_equal(w.grad.numpy(), [1, 2, 3])
    assert w.grad.dtype == np.float32


@pytest.mark.parametrize("value, want", [(1, np.int64), (True, np.bool_), (1.0, np.float32), (np.int32(3), np.int64)])
def test_full_takes_its_dtype_from_the_value(value, want):
    t = ember.full((2, 3), value)
    assert t.dtype == want and t.shape == (2, 3) and (t.numpy() == value).all()
    assert ember.full((2,), 1, dtype=np.float64).dtype == np.float64
    if torch is not None and not isinstance(value, np.integer):
        assert str(torch.full((2, 3), value).dtype) == f"torch.{np.dtype(want).name}"


def test_max_and_min_along_a_dim_give_values_and_indices():
    a = np.array([[1.0, 5.0, 5.0, -2.0], [np.nan, 2.0, np.nan, 1.0], [3.0, 3.0, 0.0, 0.0]], np.float32)
    x = ember.tensor(a, requires_grad=True)
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.detach().numpy(), [5.0, np.nan, 3.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0, 0])  # the first maximum; the first NaN
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert x.max(1).values is not None and x.max(1)[1].tolist() == [1, 0, 0]
    values.sum().backward()  # the gradient goes to the element the index names
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    low = x.min(dim=0, keepdim=True)
    assert low.values.shape == (1, 4) and low.indices.tolist() == [[1, 1, 1, 0]]
    np.testing.assert_array_equal(low.values.detach().numpy(), [[np.nan, 2.0, np.nan, -2.0]])
    scalar = ember.tensor(7.0).max(dim=0)
    assert scalar.values.shape == () and scalar.values.item() == 7.0 and scalar.indices.item() == 0
    if torch is not None:
        t = torch.tensor(a, requires_grad=True)
        tv, ti = t.max(dim=1)
        np.testing.assert_array_equal(ti.numpy(), indices.numpy())
        tv.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), x.grad.numpy())
        np.testing.assert_array_equal(torch.tensor(a).min(dim=0, keepdim=True).indices.numpy(), low.indices.numpy())


def test_whole_tensor_extremes_share_ties_and_pass_nan():
    x = ember.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0.5])  # PyTorch's even share
    y = ember.tensor([1.0, np.nan, 2.0], requires_grad=True)
    m = y.max()
    assert np.isnan(m.item())
    m.backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0, 1, 0])  # was NaN everywhere
    z = ember.tensor([[1.0, 4.0], [4.0, 0.0]], requires_grad=True)
    z.amax(dim=(0, 1)).backward()
    np.testing.assert_array_equal(z.grad.numpy(), [[0, 0.5], [0.5, 0]])
    if torch is not None:
        ty = torch.tensor([1.0, np.nan, 2.0], requires_grad=True)
        ty.max().backward()
        np.testing.assert_array_equal(ty.grad.numpy(), y.grad.numpy())


def test_argmax_argmin_and_extremes_check_their_dim():
    t = ember.tensor([[0.0, 2.0], [1.0, -1.0]])
    assert t.argmin().item() == 3 and t.argmin(dim=1).tolist() == [0, 1] and t.argmax(0, keepdim=True).tolist() == [[1, 0]]
    for call, what in [(lambda: t.max(dim=2), "max"), (lambda: t.min(dim=-3), "min"), (lambda: t.argmax(2), "argmax"),
                       (lambda: t.argmin(dim=5), "argmin"), (lambda: t.softmax(2), "softmax"),
                       (lambda: t.log_softmax(-3), "log_softmax")]:
        with pytest.raises(IndexError, match=f"{what}: dim .* is out of range"):
            call()
    with pytest.raises(TypeError, match="max: dim must be an int"):
        t.max(dim=(0, 1))
    with pytest.raises(IndexError, match="max: dim 0 has size 0"):
        ember.zeros(0, 3).max(dim=0)
    with pytest.raises(IndexError, match="argmax of an empty tensor"):
        ember.zeros(0).argmax()


def test_pow_gradients_at_zero_exponent_and_zero_base():
    x = ember.tensor([0.0, 2.0], requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0])  # was NaN at 0
    base = ember.tensor([0.0, 0.0, 2.0], requires_grad=True)
    exponent = ember.tensor([0.0, 2.0, 1.0], requires_grad=True)
    (base**exponent).sum().backward()
    np.testing.assert_allclose(base.grad.numpy(), [0, 0, 1])
    np.testing.assert_allclose(exponent.grad.numpy(), [0, 0, 2 * np.log(2)], rtol=1e-6)
    if torch is not None:
        tb = torch.tensor([0.0, 0.0, 2.0], requires_grad=True)
        te = torch.tensor([0.0, 2.0, 1.0], requires_grad=True)
        (tb**te).sum().backward()
        np.testing.assert_allclose(base.grad.numpy(), tb.grad.numpy())
        np.testing.assert_allclose(exponent.grad.numpy(), te.grad.numpy(), rtol=1e-6)


def test_clamp_of_integers_with_fractional_bounds_becomes_float():
    got = INT.clamp(1.5, 2.5)
    assert got.dtype == np.float32 and got.tolist() == [1.5, 2.0, 2.5]  # not [1, 2, 2]
    assert INT.clamp(min=2).dtype == np.int64 and INT.clamp(min=2).tolist() == [2, 2, 3]
    with pytest.raises(TypeError, match="clamp: bounds must be numbers"):
        FLOAT.clamp("0")
    if torch is not None:
        assert torch.tensor([1, 2, 3]).clamp(1.5, 2.5).tolist() == got.tolist()


def test_split_chunk_cat_and_stack_check_their_arguments():
    t = ember.arange(6).float()
    assert [p.tolist() for p in t.chunk(4)] == [[0, 1], [2, 3], [4, 5]]  # PyTorch's: at most 4 pieces
    assert [p.shape for p in t.split([1, 5])] == [(1,), (5,)]
    assert [p.shape for p in ember.zeros(0, 2).split(3)] == [(0, 2)]
    for call, error, match in [
        (lambda: t.split(0), ValueError, "split: split_size must be a positive int, got 0"),
        (lambda: t.split(-2), ValueError, "split_size must be a positive int"),
        (lambda: t.split([2, -1, 5]), ValueError, "each size must be >= 0"),
        (lambda: t.split([2, 2]), ValueError, r"sizes \[2, 2\] do not add up to dim 0's 6"),
        (lambda: t.split(2, dim=1), IndexError, "split: dim 1 is out of range"),
        (lambda: t.split("2"), TypeError, "split_size must be an int or a list of ints"),
        (lambda: t.chunk(0), ValueError, "chunk: chunks must be >= 1"),
        (lambda: ember.tensor(1.0).chunk(2), ValueError, "0-d tensor has no dim"),
        (lambda: ember.cat([]), ValueError, "cat: expected a non-empty sequence"),
        (lambda: ember.cat(t), TypeError, "cat: expected a sequence of tensors"),
        (lambda: ember.cat([t, t.numpy()]), TypeError, "cat: item 1 is a ndarray"),
        (lambda: ember.cat([t, t], dim=1), IndexError, "cat: dim 1 is out of range"),
        (lambda: ember.cat([ember.zeros(2, 3), ember.zeros(3, 2)]), ValueError, r"same shape outside dim 0"),
        (lambda: ember.cat([ember.tensor(1.0)]), ValueError, "zero-dimensional tensors cannot be concatenated"),
        (lambda: ember.stack([t, t[:3]]), ValueError, r"stack: tensors need the same shape"),
        (lambda: ember.stack([t, t], dim=2), IndexError, "stack: dim 2 is out of range"),
    ]:
        with pytest.raises(error, match=match):
            call()
    assert ember.stack([t, t], dim=-1).shape == (6, 2) and ember.cat([t, t], dim=-1).shape == (12,)


def test_grad_modes_decorate_with_or_without_parentheses():
    x = ember.ones(2, requires_grad=True)

    @ember.no_grad
    def bare(v):
        return v * 2

    @ember.inference_mode
    def bare_inference(v):
        return v * 2

    assert not bare(x).requires_grad and not bare_inference(x).requires_grad and bare.__name__ == "bare"
    with ember.no_grad():

        @ember.enable_grad
        def recording(v):
            return v * 2

        assert recording(x).requires_grad
    with pytest.raises(TypeError, match="inference_mode: mode must be True or False"):
        ember.inference_mode("yes")
    with pytest.raises(TypeError, match="decorates a function"):
        ember.no_grad()(3)


def test_decorated_generators_hold_the_mode_only_while_they_run():
    x = ember.ones(2, requires_grad=True)
    seen = []

    @ember.no_grad()
    def steps(n):
        for _ in range(n):
            got = yield x * 2
            seen.append(got)
        return "done"

    gen = steps(2)
    first = next(gen)
    assert not first.requires_grad and (x * 2).requires_grad  # the caller's code records again
    assert not gen.send("a").requires_grad
    with pytest.raises(StopIteration) as stop:
        gen.send("b")
    assert stop.value.value == "done" and seen == ["a", "b"]

    @ember.autocast("bf16")
    def policies():
        yield ember.precision.current().name
        yield ember.precision.current().name

    it = policies()
    assert next(it) == "bf16" and ember.precision.current().name == "fp32" and next(it) == "bf16"


def test_decorated_coroutines_run_their_body_in_the_mode():
    x = ember.ones(2, requires_grad=True)

    @ember.no_grad()
    async def infer():
        await asyncio.sleep(0)
        return x * 2

    @ember.autocast("bf16")
    async def policy():
        await asyncio.sleep(0)
        return ember.precision.current().name

    assert not asyncio.run(infer()).requires_grad
    assert asyncio.run(policy()) == "bf16" and ember.precision.current().name == "fp32"


def test_one_mode_object_entered_by_several_tasks_and_threads():
    shared = ember.autocast("bf16")

    async def task(delay):
        with shared:
            await asyncio.sleep(delay)
            return ember.precision.current().name

    async def both():
        return await asyncio.gather(task(0.01), task(0.02))

    assert asyncio.run(both()) == ["bf16", "bf16"] and ember.precision.current().name == "fp32"
    quiet = ember.no_grad()
    x = ember.ones(2, requires_grad=True)
    entered, leave = threading.Barrier(2), threading.Barrier(2)
    seen = []

    def worker():
        with quiet:
            entered.wait()  # both threads inside the one object's block at once
            seen.append((x * 2).requires_grad)
            leave.wait()
        seen.append((x * 2).requires_grad)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [False, False, True, True] and (x * 2).requires_grad


def test_a_decorated_coroutine_leaves_other_tasks_recording():
    x = ember.ones(2, requires_grad=True)

    @ember.no_grad()
    async def infer():
        await asyncio.sleep(0.01)
        return (x * 2).requires_grad

    async def train():
        await asyncio.sleep(0.005)  # runs while infer waits
        return (x * 2).requires_grad

    async def both():
        return await asyncio.gather(infer(), train())

    assert asyncio.run(both()) == [False, True]


def test_returned_indices_and_list_keys_do_not_move_gradients_and_clamp_takes_tensors():
    z = ember.tensor([[1.0, 2.0], [4.0, 3.0]], requires_grad=True)
    values, indices = z.max(dim=1)
    indices[0] = 0  # the caller's copy
    values.sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [[0, 1], [1, 0]])
    x = ember.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    key = [0, 1]
    y = x[key]
    key[0] = 3
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 0, 0])
    assert ember.ones(2, 3).amax(keepdim=True).shape == (1, 1) and ember.ones(2, 3).amin(keepdim=True).shape == (1, 1)
    a = ember.tensor([[1.0, 5.0]], requires_grad=True)
    out = a.clamp(max=np.array([[2.0], [4.0]]))  # bounds broadcast, as in PyTorch
    out.sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), [[1, 2], [1, 4]])
    np.testing.assert_array_equal(a.grad.numpy(), [[2, 0]])
    assert FLOAT.clamp(ember.tensor(1.5)).tolist() == [1.5, 2.0, 4.0]
    assert INT.clamp(ember.tensor([2.5, 0.0, 0.0])).dtype == np.float32
    with pytest.raises(TypeError, match="a bound that requires grad"):
        FLOAT.clamp(ember.tensor(1.0, requires_grad=True))
    if torch is not None:
        t = torch.tensor([[1.0, 5.0]], requires_grad=True)
        t.clamp(max=torch.tensor([[2.0], [4.0]])).sum().backward()
        np.testing.assert_array_equal(a.grad.numpy(), t.grad.numpy())


def test_a_uint8_tensor_index_is_refused_as_ambiguous():
    x = ember.tensor([10.0, 20.0, 30.0])
    flags = ember.tensor(np.array([1, 0, 1], np.uint8))
    for key in (flags, (flags,)):
        with pytest.raises(IndexError, match=r"ambiguous.*\.bool\(\).*\.long\(\)"):
            x[key]
        with pytest.raises(IndexError, match="ambiguous"):
            x[key] = 0.0
    assert x[flags.bool()].tolist() == [10.0, 30.0] and x[flags.long()].tolist() == [20.0, 10.0, 20.0]
    assert x.tolist() == [10.0, 20.0, 30.0]


def _dtype(lib, name):
    """The dtype called ``name`` in ``lib`` (ember takes NumPy's)."""
    return getattr(torch, name) if lib is torch else np.dtype(name)


def _same(got, want, dtype):
    """``got``, an ember or torch tensor, holds ``want`` in the dtype named ``dtype``."""
    assert str(got.dtype).removeprefix("torch.") == dtype, (got.dtype, dtype)
    np.testing.assert_allclose(np.asarray(got.tolist(), np.float64), want, rtol=1e-6)


INTEGER_PROMOTIONS = [  # name, op of (lib, dtype), values, dtype: PyTorch's result_type
    ("int32 + 5", lambda lib, d: lib.tensor([1, 2], dtype=d("int32")) + 5, [6, 7], "int32"),
    ("int8 + 1", lambda lib, d: lib.tensor([1, -2], dtype=d("int8")) + 1, [2, -1], "int8"),
    ("uint8 + 1", lambda lib, d: lib.tensor([1, 2], dtype=d("uint8")) + 1, [2, 3], "uint8"),
    ("uint8 + 300 wraps", lambda lib, d: lib.tensor([1], dtype=d("uint8")) + 300, [45], "uint8"),
    ("int32 * numpy int64", lambda lib, d: lib.tensor([1, 2], dtype=d("int32")) * np.int64(3), [3, 6], "int32"),
    ("float32 + numpy float64", lambda lib, d: lib.tensor([1.0]) + np.float64(0.5), [1.5], "float32"),
    ("float32 + 0-d float64", lambda lib, d: lib.tensor([1.0]) + lib.tensor(0.5, dtype=d("float64")), [1.5],
     "float32"),
    ("int32 + 0-d int64", lambda lib, d: lib.tensor([1], dtype=d("int32")) + lib.tensor(2), [3], "int32"),
    ("int64 + 0-d float64", lambda lib, d: lib.tensor([1]) + lib.tensor(0.5, dtype=d("float64")), [1.5], "float64"),
    ("int64 / 0-d float64", lambda lib, d: lib.tensor([1]) / lib.tensor(2.0, dtype=d("float64")), [0.5], "float64"),
    ("0-d int32 + 0-d int64", lambda lib, d: lib.tensor(1, dtype=d("int32")) + lib.tensor(1), [2], "int64"),
    ("0-d uint8 + int8", lambda lib, d: lib.tensor(1, dtype=d("uint8")) + lib.tensor([1], dtype=d("int8")), [2],
     "int8"),
    ("bool + True", lambda lib, d: lib.tensor([True, False]) + True, [1, 1], "bool"),
    ("bool + 1", lambda lib, d: lib.tensor([True, False]) + 1, [2, 1], "int64"),
    ("uint8 sum", lambda lib, d: lib.tensor([200, 100], dtype=d("uint8")).sum(), 300, "int64"),
    ("uint8 sum + 1", lambda lib, d: lib.tensor([200, 100], dtype=d("uint8")).sum() + 1, 301, "int64"),
    ("int32 sum", lambda lib, d: lib.tensor([1, 2], dtype=d("int32")).sum(), 3, "int64"),
    ("bool sum", lambda lib, d: lib.tensor([True, True]).sum(), 2, "int64"),
    ("cat int64 float32", lambda lib, d: lib.cat([lib.tensor([1]), lib.tensor([1.5])]), [1, 1.5], "float32"),
    ("stack bool int64", lambda lib, d: lib.stack([lib.tensor([True]), lib.tensor([2])]), [[1], [2]], "int64"),
    ("where scalars", lambda lib, d: lib.where(lib.tensor([True, False]), 1.0, 0.0), [1, 0], "float32"),
    ("where int scalars", lambda lib, d: lib.where(lib.tensor([True, False]), 1, 0), [1, 0], "int64"),
    ("where int32 and 0", lambda lib, d: lib.where(lib.tensor([True, False]), lib.tensor([1, 2], dtype=d("int32")),
                                                   0), [1, 0], "int32"),
    ("where float32 and 0.5", lambda lib, d: lib.where(lib.tensor([True, False]), lib.tensor([1.0, 2.0]), 0.5),
     [1, 0.5], "float32"),
]


@pytest.mark.parametrize("name, op, want, dtype", INTEGER_PROMOTIONS, ids=[p[0] for p in INTEGER_PROMOTIONS])
def test_integer_and_0d_promotion_follows_pytorch(name, op, want, dtype):
    _same(op(ember, lambda n: _dtype(ember, n)), want, dtype)
    if torch is not None:
        _same(op(torch, lambda n: _dtype(torch, n)), want, dtype)


def test_promotion_to_a_dtype_ember_lacks_is_an_error():
    with pytest.raises(TypeError, match="uint8 and int8 promote to int16, which Ember's tensors do not support"):
        ember.tensor([1], dtype=np.uint8) + ember.tensor([1], dtype=np.int8)
    if torch is not None:
        assert (torch.tensor([1], dtype=torch.uint8) + torch.tensor([1], dtype=torch.int8)).dtype == torch.int16


FLOATING_OF_INTEGERS = [  # name, op, values: integer and bool inputs give float32
    ("sigmoid", lambda t: t.sigmoid(), [0.98201376, 0.01798621, 0.5]),
    ("tanh", lambda t: t.tanh(), [0.99932930, -0.99932930, 0.0]),
    ("exp", lambda t: t.exp(), [54.59815, 0.01831564, 1.0]),
    ("log", lambda t: (t.abs() + 1).log(), [1.6094379, 1.6094379, 0.0]),
    ("sqrt", lambda t: t.abs().sqrt(), [2.0, 2.0, 0.0]),
    ("logsumexp", lambda t: t.logsumexp(0), 4.0184793),
    ("exp of bool", lambda t: (t > 0).exp(), [2.7182817, 1.0, 1.0]),
]


@pytest.mark.parametrize("name, op, want", FLOATING_OF_INTEGERS, ids=[p[0] for p in FLOATING_OF_INTEGERS])
def test_floating_functions_of_integer_tensors_give_float32(name, op, want):
    _same(op(ember.tensor([4, -4, 0])), want, "float32")
    if torch is not None:
        _same(op(torch.tensor([4, -4, 0])), want, "float32")


@pytest.mark.parametrize("op", [lambda t: t.mean(), lambda t: t.var(), lambda t: t.std(), lambda t: t.softmax(0),
                                lambda t: t.log_softmax(0)], ids=["mean", "var", "std", "softmax", "log_softmax"])
def test_integer_means_variances_and_softmax_are_errors(op):
    with pytest.raises(TypeError, match="floating"):
        op(ember.tensor([1, 2]))
    if torch is not None:
        with pytest.raises((RuntimeError, NotImplementedError)):
            op(torch.tensor([1, 2]))


def test_mean_and_sum_take_a_dtype():
    for lib in (ember, torch) if torch is not None else (ember,):
        _same(lib.tensor([1, 2]).mean(dtype=_dtype(lib, "float32")), 1.5, "float32")
        _same(lib.tensor([1, 2]).sum(dtype=_dtype(lib, "float32")), 3, "float32")
        _same(lib.tensor([1.5, 2.5]).sum(dtype=_dtype(lib, "float64")), 4, "float64")
    w = ember.tensor([1.0, 2.0], requires_grad=True)
    w.sum(dtype=np.float64).backward()  # differentiable through the cast
    assert w.grad.tolist() == [1.0, 1.0] and w.grad.dtype == np.float32


def test_view_shares_memory_or_refuses():
    t = ember.arange(6).reshape(2, 3).transpose(0, 1)
    with pytest.raises(RuntimeError, match=r"view size .* is not compatible with input tensor's size .* and stride.*"
                                           r"Use \.reshape\(\.\.\.\) instead"):
        t.view(-1)
    assert t.reshape(-1).tolist() == [0, 3, 1, 4, 2, 5]  # reshape copies
    v = t.view(3, 2, 1)
    v[0, 0, 0] = 9
    assert t[0, 0].item() == 9  # a view shares the memory
    x = ember.arange(24).reshape(2, 3, 4).transpose(0, 1)
    assert x.view(3, 2, 2, 2).shape == (3, 2, 2, 2)  # splitting a dim needs no copy
    with pytest.raises(RuntimeError, match="view size"):
        x.view(6, 4)
    if torch is not None:
        tt = torch.arange(6).reshape(2, 3).transpose(0, 1)
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            tt.view(-1)
        xt = torch.arange(24).reshape(2, 3, 4).transpose(0, 1)
        assert xt.view(3, 2, 2, 2).shape == (3, 2, 2, 2)
        with pytest.raises(RuntimeError, match="view size"):
            xt.view(6, 4)


def test_iteration_and_formatting():
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(ember.tensor(3.0))
    rows = list(ember.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True))
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0, 4.0]] and rows[0].grad_fn is not None
    assert f"{ember.tensor(3.14159):.2f}" == "3.14" and f"{ember.tensor(3):5d}" == "    3"
    assert f"{ember.tensor([3.5])}" == str(ember.tensor([3.5]))
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{ember.tensor([3.14159]):.2f}"
    if torch is not None:
        with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
            list(torch.tensor(3.0))
        assert f"{torch.tensor(3.14159):.2f}" == "3.14" and f"{torch.tensor(3):5d}" == "    3"
        with pytest.raises(TypeError, match="unsupported format string"):
            f"{torch.tensor([3.14159]):.2f}"


def test_comparisons_with_non_numbers_and_logic():
    for lib in (ember, torch) if torch is not None else (ember,):
        t = lib.tensor([1.0, 2.0])
        assert (t == None) is False and (t != None) is True  # noqa: E711 (the point of the test)
        assert (t == "a") is False and (t == [1.0, 2.0]) is False and t not in [None, "a"]
        with pytest.raises(TypeError, match="'<' not supported"):
            t < None  # noqa: B015
        b = lib.tensor([True, False])
        assert (~b).tolist() == [False, True] and (b & True).tolist() == [True, False]
        assert (True & b).tolist() == [True, False] and (b | lib.tensor([False, True])).tolist() == [True, True]
        assert (b ^ True).tolist() == [False, True]
        assert (~lib.tensor([1, 2])).tolist() == [-2, -3] and (lib.tensor([6]) & lib.tensor([3])).tolist() == [2]
        _same(lib.tensor([True]) & lib.tensor([3]), [1], "int64")
        _same(lib.tensor([1]) ^ lib.tensor([3], dtype=_dtype(lib, "int32")), [2], "int64")
        with pytest.raises((TypeError, NotImplementedError)):
            ~lib.ones(2)
        with pytest.raises((TypeError, NotImplementedError)):
            lib.tensor([1]) | 1.5
        m = lib.tensor([[1, 0], [1, 1]])
        assert m.any().item() is True and m.all().item() is False
        assert m.all(dim=1, keepdim=True).tolist() == [[False], [True]] and m.any(0).tolist() == [True, True]
        assert m.all(dim=(0, 1)).item() is False and lib.tensor(1).all(0).item() is True
        _same(lib.tensor([0, 2], dtype=_dtype(lib, "uint8")).any(), 1, "uint8")
        with pytest.raises(RuntimeError, match="ambiguous"):
            bool(t)


def test_requires_grad_and_grad_are_checked_when_set():
    w = ember.ones(3, requires_grad=True)
    y = w * 2
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables.*detach"):
        y.requires_grad = False
    assert y.requires_grad and y.requires_grad_() is y
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        ember.tensor([1]).requires_grad = True
    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"assigned grad has data of a different size: \(3, 3\)"):
        x.grad = ember.zeros(3, 3)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different dtype: float64"):
        x.grad = ember.zeros(3, dtype=np.float64)
    with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None, got ndarray"):
        x.grad = np.zeros(3)
    x.grad = ember.full((3,), 2.0)
    (x * 1).sum().backward()  # accumulates into the assigned gradient
    assert x.grad.tolist() == [3.0, 3.0, 3.0] and x.requires_grad
    x.requires_grad = False
    assert not (x * 2).requires_grad
    if torch is not None:
        tw = torch.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
            (tw * 2).requires_grad = False
        with pytest.raises(RuntimeError, match="only Tensors of floating point"):
            torch.tensor([1]).requires_grad = True
        with pytest.raises(RuntimeError, match="size"):
            tw.grad = torch.zeros(3, 3)
        with pytest.raises(RuntimeError, match="dtype"):
            tw.grad = torch.zeros(3, dtype=torch.float64)


def test_hooks_and_retained_gradients_follow_pytorch():
    def run(lib):
        x = lib.ones(3, requires_grad=True)
        y = x * 2
        u = y * 5  # y used before its hook is registered: the hook still sees all of y's gradient
        y.retain_grad()
        handle = y.register_hook(lambda g: g * 10)
        leaf_seen = []
        x.register_hook(lambda g: leaf_seen.append(g.tolist()))
        (y * 3 + u).sum().backward(retain_graph=True)
        first = (y.grad.tolist(), x.grad.tolist(), leaf_seen[0])
        handle.remove()
        handle.remove()  # a second remove does nothing
        x.grad = None
        (y * 3).sum().backward()
        return first, y.grad.tolist(), x.grad.tolist()

    (y_grad, x_grad, seen), y_again, x_again = run(ember)
    assert y_grad == [80.0] * 3 and x_grad == [160.0] * 3 and seen == [160.0] * 3
    assert y_again == [83.0] * 3 and x_again == [6.0] * 3  # the hook is gone; y's gradient accumulates
    if torch is not None:
        assert run(torch) == ((y_grad, x_grad, seen), y_again, x_again)
    leaf = ember.ones(2, requires_grad=True)
    leaf.register_hook(lambda g: g * 2)
    (leaf * 3).sum().backward()
    assert leaf.grad.tolist() == [6.0, 6.0]  # a leaf's hook changes what reaches .grad
    a, _ = ember.ones(4, requires_grad=True).split(2)
    a.retain_grad()
    (a * 2).sum().backward()
    assert a.grad.tolist() == [2.0, 2.0] and a.grad_fn.name() == "SplitBackward"
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        ember.ones(2).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="can't retain_grad on a tensor that has requires_grad=False"):
        ember.ones(2).retain_grad()
    bad = ember.ones(2, requires_grad=True)
    bad.register_hook(lambda g: ember.ones(3))
    with pytest.raises(RuntimeError, match="a hook returns None or a tensor of the gradient's shape"):
        (bad * 1).sum().backward()


def test_floor_division_and_remainder_follow_python_signs():
    a, b = [-7, 7, -7, 7], [2, 2, -2, -2]
    for lib in (ember, torch) if torch is not None else (ember,):
        assert (lib.tensor(a) // lib.tensor(b)).tolist() == [-4, 3, 3, -4]
        assert (lib.tensor(a) % lib.tensor(b)).tolist() == [1, 1, -1, -1]
        assert (lib.tensor([-7.0, 7.0]) // 2).tolist() == [-4.0, 3.0] and (7 // lib.tensor([2, -2])).tolist() == [3, -4]
        assert (7 % lib.tensor([2, -2])).tolist() == [1, -1] and lib.tensor([5]).remainder(3).tolist() == [2]
        assert lib.tensor([5]).floor_divide(3).tolist() == [1]
        assert (lib.tensor([1.0]) // 0).tolist() == [np.inf] and np.isnan((lib.tensor([1.0]) % 0).item())
        _same(lib.tensor([1, 2], dtype=_dtype(lib, "int32")) % 2.5, [1, 2], "float32")
    with pytest.raises(ZeroDivisionError, match="integer division or modulo by zero"):
        ember.tensor([1]) // 0
    with pytest.raises(ZeroDivisionError):
        ember.tensor([1]) % ember.tensor([0])
    x = ember.tensor([5.0, -5.0], requires_grad=True)
    d = ember.tensor([3.0, 3.0], requires_grad=True)
    (x % d).sum().backward()  # d/dx 1, d/dd -floor(x / d)
    assert x.grad.tolist() == [1.0, 1.0] and d.grad.tolist() == [-1.0, 2.0]
    assert not (x // d).requires_grad
    if torch is not None:
        tx = torch.tensor([5.0, -5.0], requires_grad=True)
        td = torch.tensor([3.0, 3.0], requires_grad=True)
        (tx % td).sum().backward()
        assert tx.grad.tolist() == x.grad.tolist() and td.grad.tolist() == d.grad.tolist()
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            torch.tensor([1]) // 0


def test_small_divergences_from_pytorch_fixed():
    m = ember.tensor([[1.0, 5.0, 2.0], [0.0, 3.0, 4.0]])
    assert m.argmax(keepdim=True).shape == (1, 1) and m.argmax(keepdim=True).item() == 1
    assert m.argmin(keepdim=True).tolist() == [[3]] and ember.tensor(1.0).argmax(keepdim=True).shape == ()
    with pytest.raises(TypeError, match="max: keepdim needs a dim"):
        m.max(keepdim=True)
    with pytest.raises(RuntimeError, match="(?i)at least one of 'min' or 'max' must not be None"):
        m.clamp()
    with pytest.raises(RuntimeError, match="a Tensor with 6 elements cannot be converted to Scalar"):
        m.item()
    assert ember.Tensor([1, 2]).dtype == np.float32 and ember.Tensor([1, 2]).tolist() == [1.0, 2.0]
    s = ember.ones(2)
    assert s.squeeze(0) is not s and s.squeeze(0).shape == (2,) and ember.tensor(1.0).squeeze() is not None
    with pytest.warns(UserWarning, match="reverses its dims"):
        assert ember.zeros(2, 3, 4).T.shape == (4, 3, 2)
    with pytest.warns(UserWarning):
        assert ember.tensor(1.0).T.shape == ()
    z = ember.tensor(2.0)
    assert z.transpose(0, 0).item() == 2.0 and z.transpose(-1, 0).shape == ()
    with pytest.raises(IndexError, match="transpose: dim 1 is out of range"):
        z.transpose(0, 1)
    if torch is not None:
        tm = torch.tensor(m.tolist())
        assert tm.argmax(keepdim=True).shape == (1, 1) and tm.argmin(keepdim=True).tolist() == [[3]]
        with pytest.raises(TypeError):
            tm.max(keepdim=True)
        with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
            tm.clamp()
        with pytest.raises(RuntimeError, match="a Tensor with 6 elements cannot be converted to Scalar"):
            tm.item()
        assert torch.Tensor([1, 2]).dtype == torch.float32
        ts = torch.ones(2)
        assert ts.squeeze(0) is not ts
        with pytest.warns(UserWarning):
            assert torch.zeros(2, 3, 4).T.shape == (4, 3, 2)
        assert torch.tensor(2.0).transpose(0, 0).item() == 2.0
        with pytest.raises(IndexError):
            torch.tensor(2.0).transpose(0, 1)
