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
    assert ember.ones(2, 3).max(keepdim=True).shape == (1, 1) and ember.ones(2, 3).amin(keepdim=True).shape == (1, 1)
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
