"""The autograd engine and the differentiable ops: every op in one table is checked forward
against NumPy and backward by gradcheck (float64 central differences); then the engine's
contract (accumulation, retain_graph, freed graphs, in-place checks, grad mode, deep chains)."""

import threading
import weakref

import numpy as np
import pytest

import ember
from ember import _C
from ember.autograd import Function, GradcheckError, gradcheck

# name, function of tensors, the same on NumPy arrays, input shapes, input domain
OPS = [
    ("add", lambda a, b: a + b, np.add, [(3, 4), (4,)], None),
    ("add_scalar", lambda a: a + 2.5, lambda a: a + 2.5, [(2, 3)], None),
    ("radd_scalar", lambda a: 3 + a, lambda a: 3 + a, [(2, 3)], None),
    ("sub_scalar", lambda a: a - 1.25, lambda a: a - 1.25, [(5,)], None),
    ("rsub_scalar", lambda a: 2 - a, lambda a: 2 - a, [(3, 1)], None),
    ("mul_scalar", lambda a: a * -1.5, lambda a: a * -1.5, [()], None),
    ("rmul_scalar", lambda a: 4 * a, lambda a: 4 * a, [(0, 3)], None),
    ("div_scalar", lambda a: a / 3.0, lambda a: a / 3.0, [(2, 5)], None),
    ("radd", lambda a: 1.0 + a, lambda a: 1.0 + a, [(5,)], None),
    ("sub", lambda a, b: a - b, np.subtract, [(2, 1, 3), (4, 1)], None),
    ("rsub", lambda a: 3.0 - a, lambda a: 3.0 - a, [(3,)], None),
    ("mul", lambda a, b: a * b, np.multiply, [(3, 1), (1, 5)], None),
    ("div", lambda a, b: a / b, np.divide, [(4, 3), (3,)], "positive"),
    ("rdiv", lambda a: 2.0 / a, lambda a: 2.0 / a, [(3, 2)], "positive"),
    ("neg", lambda a: -a, np.negative, [(2, 2)], None),
    ("pow_scalar", lambda a: a**3, lambda a: a**3, [(3, 3)], None),
    ("pow_tensor", lambda a, b: a**b, np.power, [(2, 3), (3,)], "positive"),
    ("exp", lambda a: a.exp(), np.exp, [(4, 2)], None),
    ("log", lambda a: a.log(), np.log, [(4, 2)], "positive"),
    ("sqrt", lambda a: a.sqrt(), np.sqrt, [(3,)], "positive"),
    ("abs", lambda a: a.abs(), np.abs, [(6,)], "nonzero"),
    ("relu", lambda a: a.relu(), lambda a: np.maximum(a, 0), [(3, 4)], "nonzero"),
    ("sum", lambda a: a.sum(), np.sum, [(3, 4)], None),
    ("sum_dim", lambda a: a.sum(dim=1), lambda a: a.sum(axis=1), [(3, 4, 2)], None),
    ("sum_keepdim", lambda a: a.sum(dim=(0, 2), keepdim=True), lambda a: a.sum(axis=(0, 2), keepdims=True),
     [(3, 4, 2)], None),
    ("mean", lambda a: a.mean(), np.mean, [(5, 2)], None),
    ("mean_dim", lambda a: a.mean(dim=-1), lambda a: a.mean(axis=-1), [(2, 7)], None),
    ("scalar_input", lambda a: (a * a).exp(), lambda a: np.exp(a * a), [()], None),
    ("reshape", lambda a: a.reshape(2, 6), lambda a: a.reshape(2, 6), [(3, 4)], None),
    ("view", lambda a: a.view(-1), lambda a: a.reshape(-1), [(3, 4)], None),
    ("transpose", lambda a: a.transpose(0, 2), lambda a: np.swapaxes(a, 0, 2), [(2, 3, 4)], None),
    ("T", lambda a: a.T, lambda a: a.T, [(2, 5)], None),
    ("matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (4, 5)], None),
    ("matmul_vec", lambda a, b: a @ b, np.matmul, [(3, 4), (4,)], None),
    ("vec_matmul", lambda a, b: a @ b, np.matmul, [(4,), (4, 2)], None),
    ("matmul_batched", lambda a, b: a @ b, np.matmul, [(2, 1, 3, 4), (3, 4, 2)], None),
    ("size_zero", lambda a: (a * 2).sum(dim=0), lambda a: (a * 2).sum(axis=0), [(0, 3)], None),
    ("clamp", lambda a: a.clamp(-0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), [(4, 4)], "away_from_bounds"),
    ("clamp_min", lambda a: a.clamp(min=0.1), lambda a: np.maximum(a, 0.1), [(5,)], "away_from_bounds"),
    ("maximum", lambda a, b: ember.maximum(a, b), np.maximum, [(3, 4), (4,)], None),
    ("minimum", lambda a, b: ember.minimum(a, b), np.minimum, [(2, 3), (2, 1)], None),
    ("where", lambda a, b: ember.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b), [(3, 3), (3,)], "nonzero"),
    ("max", lambda a: a.max(), np.max, [(3, 5)], None),
    ("max_dim", lambda a: a.max(dim=1).values, lambda a: a.max(axis=1), [(4, 6)], None),
    ("min_keepdim", lambda a: a.min(dim=0, keepdim=True)[0], lambda a: a.min(axis=0, keepdims=True), [(4, 2)], None),
    ("max_0d", lambda a: a.max(dim=0).values * 2, lambda a: a * 2, [()], None),
    ("amax_dims", lambda a: a.amax(dim=(0, 2)), lambda a: a.max(axis=(0, 2)), [(3, 4, 2)], None),
    ("amin_keepdim", lambda a: a.amin(dim=-1, keepdim=True), lambda a: a.min(axis=-1, keepdims=True), [(2, 5)],
     None),
    ("logsumexp", lambda a: a.logsumexp(dim=-1), lambda a: np.log(np.exp(a).sum(-1)), [(3, 7)], None),
    ("var", lambda a: a.var(dim=0), lambda a: a.var(axis=0, ddof=1), [(5, 3)], None),
    ("std", lambda a: a.std(), lambda a: a.std(ddof=1), [(4, 4)], None),
    ("flatten", lambda a: a.flatten(1), lambda a: a.reshape(2, -1), [(2, 3, 4)], None),
    ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), [(2, 3, 4)], None),
    ("squeeze", lambda a: a.squeeze(1), lambda a: a.squeeze(1), [(3, 1, 2)], None),
    ("unsqueeze", lambda a: a.unsqueeze(-1), lambda a: a[..., None], [(3, 2)], None),
    ("expand", lambda a: a.expand(4, 3, 2), lambda a: np.broadcast_to(a, (4, 3, 2)), [(3, 1)], None),
    ("index_basic", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [(4, 5)], None),
    ("index_repeated", lambda a: a[np.array([0, 2, 0, 0])], lambda a: a[[0, 2, 0, 0]], [(3, 2)], None),
    ("index_mixed", lambda a: a[np.array([1, 1]), 1:], lambda a: a[[1, 1], 1:], [(3, 4)], None),
    ("cat", lambda a, b: ember.cat([a, b, a], dim=1), lambda a, b: np.concatenate([a, b, a], 1), [(2, 3), (2, 1)],
     None),
    ("stack", lambda a, b: ember.stack([a, b], dim=1), lambda a, b: np.stack([a, b], 1), [(2, 3), (2, 3)], None),
    ("split", lambda a: a.split(2, dim=1)[1] * 3, lambda a: a[:, 2:4] * 3, [(2, 5)], None),
    ("chunk", lambda a: a.chunk(2)[1].exp(), lambda a: np.exp(a[2:]), [(3, 2)], None),
    ("sigmoid", lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), [(3, 4)], None),
    ("tanh", lambda a: a.tanh(), np.tanh, [(4,)], None),
    ("softmax", lambda a: a.softmax(dim=1), lambda a: np.exp(a) / np.exp(a).sum(1, keepdims=True), [(3, 5)], None),
    ("log_softmax", lambda a: a.log_softmax(dim=0), lambda a: a - np.log(np.exp(a).sum(0, keepdims=True)),
     [(4, 2)], None),
    ("chain", lambda a, b: ((a @ b).relu() + 1).log().mean(), lambda a, b: np.log(np.maximum(a @ b, 0) + 1).mean(),
     [(4, 3), (3, 2)], None),
]


def sample(rng, shape, domain):
    x = rng.standard_normal(shape)
    if domain == "positive":
        x = np.abs(x) + 0.5
    elif domain == "nonzero":
        x = np.where(np.abs(x) < 0.1, 0.5, x)
    elif domain == "away_from_bounds":  # clamp's kinks at -0.5, 0.1 and 0.7
        x = np.where(np.min(np.abs(x[..., None] - np.array([-0.5, 0.1, 0.7])), axis=-1) < 0.05, 0.3, x)
    return x


@pytest.mark.parametrize("name, fn, ref, shapes, domain", OPS, ids=[op[0] for op in OPS])
def test_op_forward_and_gradcheck(device, rng, name, fn, ref, shapes, domain):
    arrays = [sample(rng, s, domain) for s in shapes]
    tensors = [ember.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    assert all(t.device == device for t in tensors)
    out = fn(*tensors)
    assert out.device == device
    np.testing.assert_allclose(out.detach().cpu().numpy(), ref(*arrays), rtol=1e-12, atol=1e-12)
    assert out.requires_grad and out.grad_fn is not None
    assert gradcheck(fn, tensors)
    # float32 forward (matmul runs on Ember's GEMM) agrees with NumPy to float32 precision.
    out32 = fn(*[ember.tensor(a.astype(np.float32)) for a in arrays])
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.cpu().numpy(), ref(*arrays), rtol=2e-5, atol=2e-5)


def test_gradcheck_catches_a_wrong_backward(device):
    class Wrong(ember.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2 a g

    x = ember.tensor(np.array([1.5, -2.0]), dtype=np.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="backward gives"):
        gradcheck(lambda t: Wrong.apply(t), [x])


def test_gradients_accumulate_in_leaves(device):
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    first = x.grad
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), 2 * np.array([1, 2, 3]) + 3)
    # In place, as PyTorch: a reference taken to .grad (an optimizer's, a bucket's) sees the sum.
    assert x.grad is first
    # A gradient the user set on read-only memory is replaced, never written.
    frozen = np.full(3, 10.0, np.float32)
    frozen.flags.writeable = False
    z = ember.tensor([1.0, 1.0, 1.0], requires_grad=True, device="cpu")
    z.grad = ember.from_numpy(frozen)
    (z * 2).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [12.0, 12.0, 12.0])
    np.testing.assert_array_equal(frozen, [10.0, 10.0, 10.0])
    # A tensor used twice gets both contributions.
    y = ember.tensor([2.0], requires_grad=True)
    (y * y + y).sum().backward()
    np.testing.assert_allclose(y.grad.cpu().numpy(), [5.0])


def test_leaves_never_share_a_gradient_array(device):
    # Add's backward hands one array to both inputs; the leaves must get their own.
    a = ember.tensor([3.0, 4.0], requires_grad=True)
    b = ember.tensor([1.0, 1.0], requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.cpu().numpy(), b.grad.cpu().numpy())
    a.grad[...] = 0.0
    np.testing.assert_array_equal(b.grad.cpu().numpy(), [1.0, 1.0])



class Fresh(Function):
    """y = 2x; backward returns a new array, remembered by weak reference (and, when asked,
    also kept by a strong one, as a saved value or a user's variable would be)."""

    made = None
    kept = None

    @staticmethod
    def forward(ctx, x, keep=False):
        ctx.keep = keep
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        out = np.multiply(g, 2, out=_C.empty(g.shape, g.dtype))  # large ones come from the host cache
        Fresh.made = weakref.ref(out)
        Fresh.kept = out if ctx.keep else None
        return out


@pytest.mark.parametrize("size", [5, 1 << 17])  # NumPy's memory and the host cache's
def test_a_gradient_nobody_else_holds_becomes_the_leaf_grad(size):
    x = ember.ones(size, requires_grad=True)
    Fresh.apply(x).backward(ember.ones(size))
    assert x.grad.cpu().numpy() is Fresh.made()  # kept without a copy
    # Held elsewhere too: the leaf gets its own copy, and editing it changes nothing else.
    x.grad = None
    Fresh.apply(x, keep=True).backward(ember.ones(size))
    assert x.grad.cpu().numpy() is not Fresh.kept and not np.shares_memory(x.grad.cpu().numpy(), Fresh.kept)
    x.grad[...] = 0.0
    assert (Fresh.kept == 2.0).all()
    # A view of the gradient (reshape's backward) is copied as well.
    x.grad = None
    Fresh.apply(x).reshape(size, 1).backward(ember.ones((size, 1)))
    assert x.grad.shape == (size,) and x.grad.cpu().numpy().flags.c_contiguous
    np.testing.assert_array_equal(x.grad.cpu().numpy(), np.full(size, 2.0, np.float32))


def test_a_gradient_passed_through_is_copied():
    # y = x + c passes the incoming gradient through unchanged: the user's array must not
    # become x.grad.
    x = ember.zeros(4, requires_grad=True)
    g = np.arange(4, dtype=np.float32)
    (x + 1.5).backward(ember.from_numpy(g))
    assert not np.shares_memory(x.grad.cpu().numpy(), g)
    x.grad[...] = -1.0
    np.testing.assert_array_equal(g, [0, 1, 2, 3])


def test_backward_twice_needs_retain_graph(device):
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    z = (x.exp() * 2).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), 4 * np.exp([1.0, 2.0]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="a second time.*retain_graph=True"):
        z.backward()


def test_non_scalar_backward_needs_a_gradient(device):
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        y.backward()
    y.backward(ember.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.cpu().numpy(), [2.0, 20.0])
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(ember.tensor([1.0, 1.0, 1.0]))
    with pytest.raises(RuntimeError, match="does not require grad"):
        ember.tensor([1.0]).sum().backward()


def test_in_place_change_of_a_saved_tensor_is_caught(device):
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0  # a non-leaf
    z = (y * y).sum()  # saves y
    # in grad mode an in-place change of a graph tensor is refused at once: the graph would not record it
    with pytest.raises(RuntimeError, match=r"grad_fn=<MulBackward>\) is being modified in place"):
        y.zero_()
    with pytest.raises(RuntimeError, match="is being modified in place"):
        y[0] = 5.0
    with pytest.raises(RuntimeError, match="is being written into another in place"):
        ember.zeros(2)[0] = x[1]
    with ember.no_grad():  # allowed there, and a saved value so changed is caught at backward
        y.zero_()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad is being modified in place"):
        x.zero_()
    with ember.no_grad():
        x.zero_()
    assert (x.detach().cpu().numpy() == 0).all()


def test_grad_mode(device):
    x = ember.tensor([1.0], requires_grad=True)
    with ember.no_grad():
        y = x * 2
        with ember.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None and z.requires_grad

    @ember.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    assert ember.autograd.is_grad_enabled()
    # Grad mode is per thread.
    seen = []
    with ember.no_grad():
        t = threading.Thread(target=lambda: seen.append(ember.autograd.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_a_long_chain_does_not_recurse(device):
    x = ember.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1e-5
    y.sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), [1.0])


def test_graph_is_released_after_backward(device):
    import gc
    import weakref

    x = ember.tensor(np.ones(1000), requires_grad=True)
    e = x * 2  # an intermediate, saved by the product below
    z = (e * e).sum()
    held = weakref.ref(e._data)
    del e
    gc.collect()
    assert held() is not None  # the graph keeps what backward will need
    z.backward()
    gc.collect()
    assert held() is None  # and lets go of it once backward has run
    np.testing.assert_allclose(x.grad.cpu().numpy(), np.full(1000, 8.0))


def test_tensor_interop_and_properties(device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = ember.from_numpy(a)
    assert t.cpu().numpy() is a and np.shares_memory(np.asarray(t), a)
    assert t.shape == (2, 3) and t.dtype == np.float32 and t.device == "cpu" and t.ndim == 2 and t.size == 6
    assert ember.tensor([[1, 2]]).dtype == np.int64 and ember.tensor([1.5]).dtype == np.float32
    assert ember.tensor(3.0).item() == 3.0 and t.tolist() == a.tolist()
    d = ember.from_dlpack(a)
    assert np.shares_memory(d.cpu().numpy(), a)
    assert np.shares_memory(np.from_dlpack(t), a)
    r = ember.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"use tensor.detach\(\).numpy\(\)"):
        r.cpu().numpy()
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        ember.tensor([1, 2], requires_grad=True)
    assert "grad_fn=<MulBackward>" in repr(r * 2) and "requires_grad=True" in repr(r)
    assert (t > 2).tolist() == [[False, False, False], [True, True, True]]


def test_backward_on_several_threads_through_one_graph():
    # Each backward sums its gradients in its own buffers, and leaves are summed under a lock.
    w = ember.ones(4, requires_grad=True)
    h = w
    for _ in range(30):
        h = h * 1.0 + 0.0
    y = h.sum()
    big = ember.zeros(1_000_000, requires_grad=True)

    def run():
        for _ in range(100):
            y.backward(retain_graph=True)
            (big * 1.0).sum().backward()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(w.grad.numpy(), [200.0] * 4)
    assert (big.grad.numpy() == 200.0).all()


def test_what_backward_reads_is_what_the_forward_saw():
    x = ember.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    index = np.array([0, 1])
    y = x[index]
    index[0] = 3  # the caller's array changes after the forward: the gradient must not follow
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 0, 0])
    for reduce in (lambda t: t.max(), lambda t: t.logsumexp(0)):  # a view of the saved kept-dims result
        z = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
        out = reduce(z)
        with ember.no_grad():
            out[...] = 10.0
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            out.backward()
    e = ember.tensor([1.0, 2.0], requires_grad=True)
    ex = e.exp()
    alias = ember.Tensor(ex)  # the same storage: the same version counter
    with ember.no_grad():
        alias[0] = 0.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        ex.sum().backward()
    logits = ember.tensor(np.zeros((2, 3)), requires_grad=True)
    target = np.array([0, 2])
    loss = ember.nn.functional.cross_entropy(logits, target, reduction="sum")
    target[:] = 1
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy()[:, 0], [1 / 3 - 1, 1 / 3])


def test_a_function_that_drops_a_needed_gradient_is_an_error():
    class Dropping(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g  # b needs one too

    a, b = ember.ones(2, requires_grad=True), ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="DroppingBackward returned 1 gradients for its 2 inputs"):
        Dropping.apply(a, b).sum().backward()


def test_integer_indexing_to_0d_is_a_view_and_tensors_convert_as_in_pytorch():
    x = ember.tensor([1.0, 2.0, 3.0])
    first = x[0]
    first[...] = 5.0
    assert x.tolist() == [5.0, 2.0, 3.0]
    grid = ember.zeros(2, 3)
    grid[1, 2][...] = 7.0
    assert grid.numpy()[1, 2] == 7.0
    n = ember.tensor(2)
    assert ember.arange(5)[:n].tolist() == [0, 1] and list(range(n)) == [0, 1] and [10, 20, 30][n] == 30
    assert float(ember.tensor(1.5)) == 1.5 and int(ember.tensor(3.7)) == 3
    with pytest.raises(TypeError, match="only integer tensors of a single element can be converted to an index"):
        [1, 2][ember.tensor(1.0)]
    with pytest.raises(TypeError, match=r"only a tensor of one element converts to float, got shape \(2,\)"):
        float(ember.zeros(2))


def test_hooks_run_in_no_grad_mode_and_gradcheck_takes_strided_inputs():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    seen = []

    def step(t):  # an optimizer step inside the backward, as PyTorch allows
        seen.append(ember.autograd.is_grad_enabled())
        t[...] = t.detach() - 0.1 * t.grad

    p.register_post_accumulate_grad_hook(step)
    (p * 2).sum().backward()
    assert seen == [False] and ember.autograd.is_grad_enabled()
    np.testing.assert_allclose(p.detach().numpy(), [0.8, 1.8])
    strided = ember.tensor(np.random.default_rng(0).random((2, 3))).transpose(0, 1).detach().requires_grad_()
    assert gradcheck(lambda t: t * 2, [strided])
