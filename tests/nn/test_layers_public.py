"""The layers, losses, initialisations and utilities users build models from, each checked
against its closed form in NumPy (always) and against PyTorch (when installed; CI installs it):
pooling layers, LeakyReLU, Softmax, ModuleList, MSELoss, L1Loss, Embedding, BatchNorm in eval
mode, the nn.init functions, clip_grad_norm_ and the model builders."""

import math

import numpy as np
import pytest

import ember
from ember import nn

try:
    import torch
except ImportError:  # optional reference
    torch = None

F = nn.functional
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def leaf(a):
    return ember.tensor(np.asarray(a), requires_grad=True)


def grad_of(fn, a, upstream):
    """Ember's gradient of <upstream, fn(x)> at x = a."""
    x = leaf(a)
    y = fn(x)
    y.backward(ember.tensor(np.asarray(upstream, y.dtype)))
    return y.detach().numpy(), x.grad.numpy()


# --------------------------------------------------------------------------- pooling layers


def test_avg_pool2d_layer_closed_form(rng):
    a = rng.standard_normal((2, 3, 8, 6)).astype(np.float32)
    up = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    layer = nn.AvgPool2d(2)
    y, g = grad_of(layer, a, up)
    np.testing.assert_allclose(y, a.reshape(2, 3, 4, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, np.repeat(np.repeat(up, 2, axis=2), 2, axis=3) / 4, rtol=1e-6, atol=1e-7)
    assert "kernel_size=2, stride=2, padding=0" in repr(layer)
    # Stride 1, window 3 with padding 1 counting the padding: each output is a 3x3 sum / 9.
    y = nn.AvgPool2d(3, stride=1, padding=1)(ember.tensor(a)).numpy()
    padded = np.pad(a.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = sum(padded[:, :, i:i + 8, j:j + 6] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    # Without counting it: the border divides by the cells inside.
    y = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(ember.tensor(a)).numpy()
    counts = sum(np.pad(np.ones((8, 6)), 1)[i:i + 8, j:j + 6] for i in range(3) for j in range(3))
    np.testing.assert_allclose(y, want * 9 / counts, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, out", [((6, 9), 1), ((6, 9), (2, 3)), ((8, 8), (4, 2))])
def test_adaptive_avg_pool2d_layer_closed_form(rng, size, out):
    # Sizes that divide: each output is the mean of an equal block, each input gets 1/block.
    oh, ow = (out, out) if isinstance(out, int) else out
    h, w = size
    a = rng.standard_normal((3, 2, h, w)).astype(np.float32)
    up = rng.standard_normal((3, 2, oh, ow)).astype(np.float32)
    layer = nn.AdaptiveAvgPool2d(out)
    y, g = grad_of(layer, a, up)
    bh, bw = h // oh, w // ow
    np.testing.assert_allclose(y, a.reshape(3, 2, oh, bh, ow, bw).mean(axis=(3, 5)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, np.repeat(np.repeat(up, bh, 2), bw, 3) / (bh * bw), rtol=1e-6, atol=1e-7)
    assert f"output_size={out}" in repr(layer)


@needs_torch
@pytest.mark.parametrize("make", [
    lambda lib: lib.nn.AvgPool2d(3, stride=2, padding=1),
    lambda lib: lib.nn.AvgPool2d((2, 3), stride=(2, 1), padding=(1, 0), ceil_mode=True, count_include_pad=False),
    lambda lib: lib.nn.AdaptiveAvgPool2d((3, 2)),
    lambda lib: lib.nn.AdaptiveAvgPool2d(4),
], ids=["avg-3s2p1", "avg-ceil-nopad", "adaptive-3x2", "adaptive-4"])
def test_pooling_layers_match_torch(rng, make):
    a = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    x, tx = leaf(a), torch.from_numpy(a.copy()).requires_grad_()
    y, ty = make(ember)(x), make(torch)(tx)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    up = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    y.backward(ember.tensor(up))
    ty.backward(torch.from_numpy(up))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool2d_takes_pytorchs_arguments_in_its_order(rng):
    a = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    layer = nn.MaxPool2d(3, 2, 1, 1, True)  # the 5th positional is return_indices, as in PyTorch
    assert layer.return_indices and not layer.ceil_mode
    assert nn.MaxPool2d(2, None, 0, 1, False, True).ceil_mode
    x = leaf(a)
    y, indices = layer(x)
    assert indices.dtype == np.int64 and not indices.requires_grad and y.shape == indices.shape == (2, 3, 4, 3)
    # Each index is the flat h * W + w position of its window's maximum in the input plane.
    planes = a.reshape(2, 3, -1)
    np.testing.assert_array_equal(np.take_along_axis(planes, indices.numpy().reshape(2, 3, -1), 2).reshape(y.shape),
                                  y.detach().numpy())
    y.sum().backward()  # the gradient goes to the maxima, as without indices
    want = np.zeros(planes.shape, np.float32)
    for n in range(2):
        for c in range(3):
            np.add.at(want[n, c], indices.numpy()[n, c].reshape(-1), 1.0)
    np.testing.assert_array_equal(x.grad.numpy(), want.reshape(a.shape))
    f_y, f_indices = F.max_pool2d(ember.tensor(a), 3, 2, 1, 1, True, True)  # F: ceil_mode, then return_indices
    assert f_y.shape == (2, 3, 4, 4)  # ceil_mode: one more column
    if torch is not None:
        ty, tindices = torch.nn.MaxPool2d(3, 2, 1, 1, True)(torch.from_numpy(a))
        np.testing.assert_array_equal(indices.numpy(), tindices.numpy())
        np.testing.assert_array_equal(y.detach().numpy(), ty.numpy())
        ty, tindices = torch.nn.functional.max_pool2d(torch.from_numpy(a), 3, 2, 1, 1, True, True)
        np.testing.assert_array_equal(f_indices.numpy(), tindices.numpy())
        np.testing.assert_array_equal(f_y.numpy(), ty.numpy())


def test_pooling_arguments_are_pairs_from_the_start():
    layer = nn.MaxPool2d([3, 2], stride=[1, 2], padding=[1, 0], dilation=[1, 1])  # lists, as JSON gives them
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == ((3, 2), (1, 2), (1, 0), (1, 1))
    assert nn.MaxPool2d(2).stride == (2, 2) and nn.AvgPool2d([2, 3], None, [1, 1]).stride == (2, 3)
    assert "kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=1, ceil_mode=False" in repr(layer)
    assert nn.rebuild(nn.describe(layer)).kernel_size == (3, 2)
    for make, message in ((lambda: nn.MaxPool2d("2"), r"MaxPool2d: kernel_size must be an int or a pair of ints"),
                          (lambda: nn.AvgPool2d(2, stride=[1, 2, 3]), r"AvgPool2d: stride must be an int or a pair"),
                          (lambda: nn.MaxPool2d(2, dilation=1.5), r"MaxPool2d: dilation must be an int or a pair")):
        with pytest.raises(TypeError, match=message):
            make()
    with pytest.raises(ValueError, match=r"AvgPool2d: padding must be >= 0, got \(-1, -1\)"):
        nn.AvgPool2d(2, padding=-1)


def test_conv2d_refuses_same_padding_with_a_stride_when_made():
    with pytest.raises(ValueError, match=r"Conv2d: padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    assert nn.Conv2d(3, 4, 3, stride=1, padding="same").padding == "same"
    if torch is not None:
        with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions"):
            torch.nn.Conv2d(3, 4, 3, stride=2, padding="same")


def test_layers_refuse_inputs_of_another_dtype_than_their_weights(rng):
    a = rng.standard_normal((4, 3)).astype(np.float64)
    w, b = ember.tensor(rng.standard_normal((2, 3)).astype(np.float32)), ember.zeros(2)
    calls = {
        "linear": lambda x: F.linear(x, w, b),
        "LayerNorm": nn.LayerNorm(3),
        "BatchNorm1d": nn.BatchNorm1d(3),
        "BatchNorm2d": lambda x: nn.BatchNorm2d(3).eval()(x.reshape(4, 3, 1, 1)),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"{name}: input has dtype float64 but the weights are float32; convert "
                                            r"the input with x.float\(\)"):
            call(ember.tensor(a))
        assert call(ember.tensor(a.astype(np.float32))).dtype == np.float32
    with pytest.raises(TypeError, match=r"linear: input has dtype int64 but the weights are float32"):
        F.linear(ember.tensor(np.ones((4, 3), np.int64)), w)
    with pytest.raises(TypeError, match=r"linear: bias has dtype float64 but the weights are float32"):
        F.linear(ember.tensor(a.astype(np.float32)), w, ember.tensor(np.zeros(2)))
    # Without weights (nor running statistics) nothing is mixed: any float dtype goes through.
    assert nn.LayerNorm(3, elementwise_affine=False)(ember.tensor(a)).dtype == np.float64
    assert nn.BatchNorm1d(3, affine=False, track_running_stats=False)(ember.tensor(a)).dtype == np.float64
    if torch is not None:  # PyTorch refuses the same calls
        tw = torch.from_numpy(w.numpy())
        for call in (lambda x: torch.nn.functional.linear(x, tw), torch.nn.LayerNorm(3), torch.nn.BatchNorm1d(3),
                     torch.nn.BatchNorm1d(3, affine=False)):
            with pytest.raises(RuntimeError):
                call(torch.from_numpy(a))


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("slope", [None, 0.2, -0.5])
def test_leaky_relu_layer(rng, slope):
    a = rng.standard_normal((4, 9))
    a = np.where(np.abs(a) < 1e-3, 0.5, a).astype(np.float32)
    up = rng.standard_normal(a.shape).astype(np.float32)
    layer = nn.LeakyReLU() if slope is None else nn.LeakyReLU(slope)
    s = 0.01 if slope is None else slope
    y, g = grad_of(layer, a, up)
    np.testing.assert_allclose(y, np.where(a > 0, a, s * a), rtol=1e-6)
    np.testing.assert_allclose(g, up * np.where(a > 0, 1, s), rtol=1e-6)
    if torch is not None:
        ty = torch.nn.LeakyReLU(s)(torch.from_numpy(a))
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_layer(rng, dim):
    a = rng.standard_normal((3, 4, 5)) * 3
    up = rng.standard_normal(a.shape)
    y, g = grad_of(nn.Softmax(dim=dim), a, up)
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    p = e / e.sum(axis=dim, keepdims=True)
    np.testing.assert_allclose(y, p, rtol=1e-12)
    np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-12)
    # The Jacobian-vector product of softmax: p * (up - <up, p>).
    np.testing.assert_allclose(g, p * (up - (up * p).sum(axis=dim, keepdims=True)), rtol=1e-10, atol=1e-14)
    if torch is not None:
        np.testing.assert_allclose(y, torch.nn.Softmax(dim=dim)(torch.from_numpy(a)).numpy(), rtol=1e-12)


@pytest.mark.parametrize("ndim, implicit", [(1, 0), (2, 1), (3, 0), (4, 1)])
def test_softmax_without_a_dim_takes_pytorchs_implicit_one(rng, ndim, implicit):
    a = rng.standard_normal((2, 3, 4, 5)[:ndim])
    want = np.exp(a) / np.exp(a).sum(axis=implicit, keepdims=True)
    assert nn.Softmax().dim is None
    for name, got in (("softmax", lambda: nn.Softmax()(ember.tensor(a))),
                      ("softmax", lambda: F.softmax(ember.tensor(a))),
                      ("log_softmax", lambda: F.log_softmax(ember.tensor(a)).exp())):
        with pytest.warns(UserWarning, match=rf"Implicit dimension choice for {name} has been deprecated"):
            np.testing.assert_allclose(got().numpy(), want, rtol=1e-12)
    if torch is not None:
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
            np.testing.assert_allclose(torch.nn.Softmax()(torch.from_numpy(a)).numpy(), want, rtol=1e-12)


# --------------------------------------------------------------------------- containers


def test_module_list(rng):
    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
            self.blocks.append(nn.Linear(4, 2))

        def forward(self, x):
            for block in self.blocks:
                x = block(x).relu() if block is not self.blocks[-1] else block(x)
            return x

    model = Tower()
    assert len(model.blocks) == 3 and isinstance(model.blocks[1], nn.Linear)
    assert [k for k, _ in model.named_parameters()] == [f"blocks.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert list(model.state_dict()) == [k for k, _ in model.named_parameters()]
    a = rng.standard_normal((5, 4)).astype(np.float32)
    h = a.astype(np.float64)
    for i, block in enumerate(model.blocks):
        h = h @ block.weight.detach().numpy().T + block.bias.detach().numpy()
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(model(ember.tensor(a)).detach().numpy(), h, rtol=1e-5, atol=1e-6)
    model(ember.tensor(a)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert nn.ModuleList().append(nn.ReLU()).__len__() == 1
    with pytest.raises(TypeError, match="ModuleList holds Modules, got int"):
        nn.ModuleList([nn.ReLU(), 3])


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_losses(rng, reduction):
    a = rng.standard_normal((4, 6))
    t = rng.standard_normal((4, 6))
    t = np.where(np.abs(a - t) < 1e-3, t + 0.1, t)  # away from |.|'s kink
    reduce = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    scale = {"mean": 1 / a.size, "sum": 1.0, "none": 1.0}[reduction]
    up = rng.standard_normal(a.shape) if reduction == "none" else rng.uniform(0.5, 2)
    for layer, value, grad in [
        (nn.MSELoss(reduction), reduce((a - t) ** 2), 2 * (a - t) * scale * up),
        (nn.L1Loss(reduction), reduce(np.abs(a - t)), np.sign(a - t) * scale * up),
    ]:
        y, g = grad_of(lambda x: layer(x, ember.tensor(t)), a, up)
        np.testing.assert_allclose(y, value, rtol=1e-12)
        np.testing.assert_allclose(g, grad, rtol=1e-12, atol=1e-15)
        if torch is not None:
            name = type(layer).__name__
            want = getattr(torch.nn, name)(reduction=reduction)(torch.from_numpy(a), torch.from_numpy(t))
            np.testing.assert_allclose(y, want.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss("avg")(ember.tensor(a), ember.tensor(t))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.functional.l1_loss(ember.tensor(a), ember.tensor(t), reduction="max")


# --------------------------------------------------------------------------- embedding


def test_embedding(rng):
    emb = nn.Embedding(11, 4)
    table = emb.weight.detach().numpy().copy()
    assert table.shape == (11, 4) and table.std() > 0.5  # N(0, 1), PyTorch's default
    idx = rng.integers(0, 11, (3, 5))
    idx[0, :3] = 7  # repeated rows add their gradients up
    out = emb(ember.tensor(idx))
    np.testing.assert_array_equal(out.detach().numpy(), table[idx])
    up = rng.standard_normal((3, 5, 4)).astype(np.float32)
    out.backward(ember.tensor(up))
    want = np.zeros_like(table, dtype=np.float64)
    np.add.at(want, idx, up)
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(emb(idx.astype(np.int32)).detach().numpy(), table[idx])  # arrays, any int type
    assert emb(np.zeros((0,), np.int64)).shape == (0, 4)
    assert "11, 4" in repr(emb)
    with pytest.raises(TypeError, match="indices must be integers"):
        emb(ember.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="index out of range"):
        emb(np.array([-1, 3]))
    if torch is not None:
        temb = torch.nn.Embedding(11, 4)
        temb.weight.data = torch.from_numpy(table.copy())
        np.testing.assert_array_equal(temb(torch.from_numpy(idx)).detach().numpy(), table[idx])


# --------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("cls, shape", [("BatchNorm1d", (8, 5)), ("BatchNorm1d", (6, 5, 4)),
                                        ("BatchNorm2d", (4, 5, 3, 2))])
@pytest.mark.parametrize("momentum", [0.2, None])
def test_batchnorm_eval_uses_the_running_statistics(rng, cls, shape, momentum):
    bn = getattr(nn, cls)(5, momentum=momentum, eps=1e-3)
    axes = (0,) + tuple(range(2, len(shape)))
    mean, var = np.zeros(5), np.ones(5)
    batches = []
    for step in range(1, 5):
        a = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        batches.append(a.astype(np.float64))
        bn(ember.tensor(a))
        n = a.size // 5
        m = 1 / step if momentum is None else momentum  # None: the cumulative average
        mean = (1 - m) * mean + m * batches[-1].mean(axis=axes)
        var = (1 - m) * var + m * batches[-1].var(axis=axes) * n / (n - 1)  # the unbiased variance
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5, atol=1e-6)
    if momentum is None:
        np.testing.assert_allclose(mean, np.mean([b.mean(axis=axes) for b in batches], axis=0), rtol=1e-12)
    with ember.no_grad():
        bn.weight.detach().numpy()[...] = rng.uniform(0.5, 2, 5)
        bn.bias.detach().numpy()[...] = rng.standard_normal(5)
    bn.eval()
    a = rng.standard_normal(shape).astype(np.float32)
    up = rng.standard_normal(shape).astype(np.float32)
    bshape = (1, 5) + (1,) * (len(shape) - 2)
    w, b = bn.weight.detach().numpy().reshape(bshape), bn.bias.detach().numpy().reshape(bshape)
    y, g = grad_of(bn, a, up)
    inv = 1 / np.sqrt(var.reshape(bshape) + 1e-3)
    np.testing.assert_allclose(y, (a - mean.reshape(bshape)) * inv * w + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, up * inv * w, rtol=1e-5, atol=1e-6)  # the statistics are constants
    before = bn.running_mean.numpy().copy()
    bn(ember.tensor(a))
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)  # eval never updates them
    assert bn.num_batches_tracked.item() == 4


def test_batchnorm_without_running_stats_or_affine(rng):
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    assert bn.weight is None and "running_mean" not in bn.state_dict()
    a = rng.standard_normal((4, 3, 2, 5)).astype(np.float32) * 3
    y = bn(ember.tensor(a)).numpy()  # batch statistics even in eval mode
    mu, v = a.mean(axis=(0, 2, 3), keepdims=True), a.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (a - mu) / np.sqrt(v + 1e-5), rtol=1e-4, atol=1e-5)
    assert "affine=False" in repr(bn)


# --------------------------------------------------------------------------- init


def fans(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0, "conv_transpose2d": 1.0,
         "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2), "selu": 3 / 4}


@pytest.mark.parametrize("shape", [(300, 400), (64, 32, 3, 3)])
def test_init_distributions(shape):
    # Large tensors: sample moments within a few percent, bounds exact.
    t = ember.empty(*shape)
    fan_in, fan_out = fans(shape)
    cases = [
        (lambda: nn.init.uniform_(t, -0.3, 0.7), ("uniform", -0.3, 0.7)),
        (lambda: nn.init.normal_(t, 0.5, 2.0), ("normal", 0.5, 2.0)),
        (lambda: nn.init.xavier_uniform_(t, gain=2.0), ("uniform", *(2 * math.sqrt(6 / (fan_in + fan_out)) * s
                                                                      for s in (-1, 1)))),
        (lambda: nn.init.xavier_normal_(t), ("normal", 0.0, math.sqrt(2 / (fan_in + fan_out)))),
        (lambda: nn.init.kaiming_uniform_(t, a=math.sqrt(5)),
         ("uniform", *(s * math.sqrt(3) * math.sqrt(2 / 6) / math.sqrt(fan_in) for s in (-1, 1)))),
        (lambda: nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
         ("uniform", *(s * math.sqrt(3) * math.sqrt(2) / math.sqrt(fan_out) for s in (-1, 1)))),
        (lambda: nn.init.kaiming_normal_(t, nonlinearity="tanh"), ("normal", 0.0, 5 / 3 / math.sqrt(fan_in))),
        (lambda: nn.init.kaiming_normal_(t, a=0.2, mode="fan_out"),
         ("normal", 0.0, math.sqrt(2 / 1.04) / math.sqrt(fan_out))),
    ]
    for init, (kind, p, q) in cases:
        assert init() is t
        v = t.numpy().astype(np.float64)
        if kind == "uniform":
            slack = 2.0**-23 * max(abs(p), abs(q))  # the float32 rounding of a draw near a bound
            assert p - slack <= v.min() and v.max() <= q + slack
            assert v.min() < p + 0.01 * (q - p) and v.max() > q - 0.01 * (q - p)
            np.testing.assert_allclose([v.mean(), v.std()], [(p + q) / 2, (q - p) / math.sqrt(12)],
                                       atol=0.03 * (q - p))
        else:
            np.testing.assert_allclose([v.mean(), v.std()], [p, q], atol=0.03 * q)
    nn.init.constant_(t, 0.25)
    assert (t.numpy() == 0.25).all()
    nn.init.zeros_(t)
    assert not t.numpy().any()
    nn.init.ones_(t)
    assert (t.numpy() == 1).all()


def test_init_details():
    t = ember.empty(20, 30)
    a = nn.init.normal_(t, generator=ember.Generator(5)).numpy().copy()
    np.testing.assert_array_equal(nn.init.normal_(t, generator=ember.Generator(5)).numpy(), a)  # seeded: repeats
    for name, gain in GAINS.items():  # a gain of 1 keeps kaiming's bound at sqrt(3 / fan_in)
        v = nn.init.kaiming_uniform_(ember.empty(200, 50), nonlinearity=name).numpy()
        bound = gain * math.sqrt(3 / 50)
        assert bound * 0.99 < np.abs(v).max() <= bound * (1 + 2.0**-23)
    # Parameters keep their identity and record the change (autograd sees a new version).
    p = nn.Parameter(ember.zeros(3, 3))
    version = p._version[0]
    nn.init.ones_(p)
    assert p._version[0] > version and p.requires_grad
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(ember.empty(5))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'softplus'"):
        nn.init.kaiming_normal_(ember.empty(4, 4), nonlinearity="softplus")


@pytest.mark.parametrize("init", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_refuses_an_unknown_mode_or_nonlinearity(init):
    mine = getattr(nn.init, init)
    theirs = getattr(torch.nn.init, init) if torch is not None else None
    for shape in ((4, 4), (0, 3)):  # an empty tensor too: the arguments are checked before anything
        for kwargs, message in (({"mode": "fanin"}, r"mode 'fanin' not supported, please use one of 'fan_in', "
                                                    r"'fan_out'"),
                                ({"nonlinearity": "relux"}, r"unsupported nonlinearity 'relux'; use one of conv1d, "),
                                ({"a": "0.1"}, r"a \(the negative slope\) must be a number, got '0.1'")):
            with pytest.raises(ValueError, match=rf"{init}: {message}"):
                mine(ember.empty(*shape), **kwargs)
            if theirs is not None and shape[0]:  # PyTorch refuses them too
                with pytest.raises(ValueError):
                    theirs(torch.empty(shape), **kwargs)
    # PyTorch lowercases the mode
    a = mine(ember.empty(50, 20), mode="FAN_OUT", generator=ember.Generator(3)).numpy()
    np.testing.assert_array_equal(mine(ember.empty(50, 20), mode="fan_out", generator=ember.Generator(3)).numpy(), a)


@needs_torch
@pytest.mark.parametrize("shape", [(7, 5), (8, 3, 5, 2)])
def test_init_gains_and_fans_match_torch(shape):
    from torch.nn import init as tinit

    tt = torch.empty(shape)
    assert fans(shape) == tinit._calculate_fan_in_and_fan_out(tt)
    for name, gain in GAINS.items():
        assert gain == pytest.approx(tinit.calculate_gain(name))
    assert math.sqrt(2 / 1.04) == pytest.approx(tinit.calculate_gain("leaky_relu", 0.2))
    # Default layer initialisation: PyTorch's bound 1/sqrt(fan_in) for weights and biases.
    for layer, tlayer in [(nn.Linear(shape[1], shape[0]), torch.nn.Linear(shape[1], shape[0])),
                          (nn.Conv2d(3, 8, (5, 2)), torch.nn.Conv2d(3, 8, (5, 2)))]:
        for name in ("weight", "bias"):
            mine, theirs = getattr(layer, name).detach().numpy(), getattr(tlayer, name).detach().numpy()
            bound = 1 / math.sqrt(fans(tuple(layer.weight.shape))[0])
            top = bound * (1 + 2.0**-23)
            assert mine.shape == theirs.shape and np.abs(mine).max() <= top and np.abs(theirs).max() <= top


# --------------------------------------------------------------------------- clip_grad_norm_


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_closed_form(rng, norm_type, max_norm):
    grads = [rng.standard_normal(s).astype(np.float32) * 3 for s in [(3, 4), (5,), (2, 2, 2)]]
    params = []
    for g in grads:
        p = nn.Parameter(ember.tensor(rng.standard_normal(g.shape).astype(np.float32)))
        p.grad = ember.tensor(g.copy())
        params.append(p)
    params.append(nn.Parameter(ember.zeros(2)))  # no gradient: skipped
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    total = np.abs(flat).max() if norm_type == float("inf") else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    got = nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    np.testing.assert_allclose(got.item(), total, rtol=1e-6)
    coef = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-6)
    assert params[-1].grad is None
    if coef < 1:
        new = np.concatenate([p.grad.numpy().ravel() for p in params[:-1]]).astype(np.float64)
        new_total = np.abs(new).max() if norm_type == float("inf") else (np.abs(new) ** norm_type).sum() ** (
            1 / norm_type)
        np.testing.assert_allclose(new_total, max_norm, rtol=1e-5)


def test_clip_grad_norm_edges(rng):
    p = nn.Parameter(ember.zeros(3))
    assert nn.utils.clip_grad_norm_([p], 1.0).item() == 0.0  # no gradients at all
    p.grad = ember.tensor([3.0, -4.0, 0.0])
    assert nn.utils.clip_grad_norm_(p, 10.0).item() == pytest.approx(5.0)  # a lone tensor
    p.grad = ember.tensor([np.inf, 1.0, 0.0])
    with np.errstate(invalid="ignore"):  # inf * 0, as in PyTorch
        assert nn.utils.clip_grad_norm_(p, 1.0, norm_type=float("inf")).item() == np.inf
    np.testing.assert_array_equal(p.grad.numpy(), [np.nan, 0.0, 0.0])  # PyTorch's result too
    p.grad = ember.tensor([np.nan, 1.0, 0.0])
    with pytest.raises(RuntimeError, match="total norm of the gradients is nan"):
        nn.utils.clip_grad_norm_(p, 1.0, norm_type=1.0, error_if_nonfinite=True)


# PyTorch's total is the norm of each gradient's norm: for 0 that counts the gradients with a
# non-zero, not the non-zeros themselves.
CLIP_CASES = {  # norm_type: (total for [[.5, 2, 3]], total for [[.5, 2, 0], [0, 0, 0], [1, 1, 1]])
    float("-inf"): (0.5, 0.0),
    0.0: (1.0, 2.0),
    -1.0: (1 / (2 + 0.5 + 1 / 3), 0.0),
    0.5: ((math.sqrt(0.5) + math.sqrt(2) + math.sqrt(3)) ** 2, (math.sqrt(0.5) + math.sqrt(2) + 3) ** 2),
    float("inf"): (3.0, 2.0),
}


@pytest.mark.parametrize("norm_type", sorted(CLIP_CASES))
def test_clip_grad_norm_every_norm_type(norm_type):
    for grads, total in zip(([[0.5, 2, 3]], [[0.5, 2, 0], [0, 0, 0], [1, 1, 1]]), CLIP_CASES[norm_type]):
        params = []
        for g in grads:
            params.append(nn.Parameter(ember.zeros(3)))
            params[-1].grad = ember.tensor(np.float32(g))
        assert nn.utils.clip_grad_norm_(params, 1.0, norm_type).item() == pytest.approx(total, rel=1e-6)
        coef = min(1.0, 1.0 / (total + 1e-6))
        for p, g in zip(params, grads):
            np.testing.assert_allclose(p.grad.numpy(), np.float32(g) * coef, rtol=1e-6)
        if torch is not None:
            ref = [torch.zeros(3, requires_grad=True) for _ in grads]
            for t, g in zip(ref, grads):
                t.grad = torch.tensor(g, dtype=torch.float32)
            assert torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type).item() == pytest.approx(total, rel=1e-6)
            for p, t in zip(params, ref):
                np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_clip_grad_norm_nan_and_bad_arguments():
    p = nn.Parameter(ember.zeros(2))
    p.grad = ember.tensor([np.nan, 1.0])
    assert math.isnan(nn.utils.clip_grad_norm_(p, 1.0).item())
    assert np.isnan(p.grad.numpy()).all()  # PyTorch's result: every gradient scaled by NaN
    p.grad = ember.tensor([np.inf, 1.0])
    with pytest.raises(RuntimeError, match=r"total norm of the gradients is inf \(norm_type=2.0\)"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    with pytest.raises(TypeError, match=r"norm_type must be numbers, got max_norm=1.0 and norm_type='two'"):
        nn.utils.clip_grad_norm_(p, 1.0, "two")
    empty = nn.Parameter(ember.zeros(0))
    empty.grad = ember.zeros(0)
    with pytest.raises(ValueError, match=r"norm_type=-inf has no value for an empty gradient"):
        nn.utils.clip_grad_norm_([empty, p], 1.0, float("-inf"))
    assert nn.utils.clip_grad_norm_(empty, 1.0, 2.0).item() == 0.0


# --------------------------------------------------------------------------- model builders


def test_model_builders(rng):
    mlp = ember.models.build("mlp", (1, 4, 5), 3, hidden=(16, 8))
    assert [type(m).__name__ for m in mlp] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert mlp[1].weight.shape == (16, 20) and mlp[5].weight.shape == (3, 8)
    x = rng.standard_normal((2, 1, 4, 5)).astype(np.float32)
    h = x.reshape(2, -1).astype(np.float64)
    for i in (1, 3, 5):
        h = h @ mlp[i].weight.detach().numpy().T + mlp[i].bias.detach().numpy()
        h = np.maximum(h, 0) if i < 5 else h
    np.testing.assert_allclose(mlp(ember.tensor(x)).detach().numpy(), h, rtol=1e-5, atol=1e-6)
    cnn = ember.models.build("cnn", (3, 8, 8), 10, padding=1)
    assert cnn(ember.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        ember.models.build("resnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="input_shape must be"):
        ember.models.mlp((1, 0, 8), 10)
    with pytest.raises(ValueError, match="classes must be an int >= 2"):
        ember.models.mlp((1, 8, 8), 1)
    with pytest.raises(ValueError, match="padding must be 0 or 1"):
        ember.models.cnn((1, 8, 8), 10, padding=2)
    with pytest.raises(ValueError, match="cnn needs images of at least 4x4"):
        ember.models.cnn((1, 3, 3), 10)
