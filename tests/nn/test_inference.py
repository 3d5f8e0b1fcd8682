"""nn.Sequential's inference path (ember.nn.inference): in eval mode without autograd its output
equals the layer-by-layer forward's for every layer it plans and around the ones it does not;
it steps aside for training, autograd, the bf16 policy, another dtype, a replaced forward and
bad input (whose errors stay the layer's); it follows weights and configurations that change."""

import copy
import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from concurrency import run_threads

import ember
from ember import models, nn, quant
from ember.nn import inference

try:
    import torch
except ImportError:  # optional reference
    torch = None


def layer_by_layer(model, x):
    with ember.no_grad():
        for m in model.modules():
            if m is not model and not isinstance(m, nn.Sequential):
                x = m(x)
        return x.numpy()


def planned(model, x):
    with ember.no_grad():
        y = inference.forward(model.eval(), x)
    assert y is not NotImplemented, "the inference path did not apply"
    return y.numpy()


def images(rng, shape):
    return ember.tensor(rng.standard_normal(shape).astype(np.float32))


MODELS = {
    "seed CNN": (lambda: models.cnn((3, 16, 16), 10), (3, 16, 16)),
    "digits CNN": (lambda: models.cnn((1, 8, 8), 10, padding=1), (1, 8, 8)),
    "MLP": (lambda: models.mlp((2, 5, 5), 4), (2, 5, 5)),
    "pools": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding="same" if False else 1, groups=3), nn.ReLU(),
                                    nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                                    nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d((2, 3)),
                                    nn.Flatten(), nn.Dropout(0.5), nn.Identity(), nn.Linear(36, 7)), (3, 20, 17)),
    "same and dilation": (lambda: nn.Sequential(nn.Conv2d(3, 4, (3, 2), padding="same", dilation=(2, 1)), nn.ReLU(),
                                                nn.MaxPool2d(3, stride=1, padding=1, dilation=2), nn.Flatten(1, 2),
                                                nn.ReLU()), (3, 9, 9)),
    "unplanned layers between": (lambda: nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 8, 3, padding=1), bn=nn.BatchNorm2d(8), act=nn.GELU(),
        block=nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), fc=nn.Linear(8 * 6 * 6, 16), ln=nn.LayerNorm(16),
        out=nn.Linear(16, 5), soft=nn.Softmax(-1))), (3, 12, 12)),
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_plan_equals_the_layer_by_layer_forward(rng, name, batch):
    make, shape = MODELS[name]
    ember.manual_seed(0)
    model = make().eval()
    x = images(rng, (batch, *shape))
    np.testing.assert_array_equal(planned(model, x), layer_by_layer(model, x))


def test_quantized_models_take_the_path_too(rng):
    ember.manual_seed(1)
    q, _ = quant.quantize(models.cnn((1, 8, 8), 10, padding=1), bits=8)
    x = images(rng, (2, 1, 8, 8))
    np.testing.assert_array_equal(planned(q, x), layer_by_layer(q.eval(), x))


def test_it_steps_aside_when_it_does_not_apply(rng):
    ember.manual_seed(2)
    model = models.cnn((1, 8, 8), 10, padding=1)
    x = images(rng, (2, 1, 8, 8))
    with ember.no_grad():
        assert inference.forward(model.train(), x) is NotImplemented  # training
        model.eval()
        assert inference.forward(model, x.double()) is NotImplemented  # another dtype
        assert inference.forward(model, x.numpy()) is NotImplemented  # not a Tensor
        with ember.autocast("bf16"):
            assert inference.forward(model, x) is NotImplemented  # the bf16 policy
        model[0].forward = model[0].forward  # a replaced forward (profiling wraps them so)
        assert inference.forward(model, x) is NotImplemented
        del model[0].__dict__["forward"]
        assert inference.forward(model, x) is not NotImplemented
    assert inference.forward(model, x) is NotImplemented  # autograd on
    y = model(x)
    assert y.requires_grad  # and the ordinary forward records the graph


def test_a_layer_left_training_keeps_its_training_behaviour(rng):
    ember.manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3)).eval()
    x = images(rng, (2, 1, 8, 8))
    with ember.no_grad():
        first = model(x).numpy()
        model[1].train()  # this Dropout drops even inside an eval model, as in PyTorch
        dropped = model(x).numpy()
        model[1].eval()
        np.testing.assert_array_equal(model(x).numpy(), first)
    assert not np.array_equal(first, dropped)


def test_bad_input_keeps_the_layers_errors(rng):
    ember.manual_seed(3)
    model = models.cnn((1, 8, 8), 10, padding=1).eval()
    with ember.no_grad():
        with pytest.raises(ValueError, match=r"input has 3 channels"):
            model(images(rng, (2, 3, 8, 8)))
        with pytest.raises(ValueError, match=r"Linear\(512, 128\): input has 128 features"):
            model(images(rng, (2, 1, 4, 4)))


def test_it_follows_new_weights_and_configurations(rng):
    ember.manual_seed(4)
    model = models.cnn((1, 8, 8), 10, padding=1)
    x = images(rng, (4, 1, 8, 8))
    y = np.random.default_rng(0).integers(0, 10, 4)
    before = planned(model, x)
    model.train()
    model.compile(optimizer="adam", lr=1e-2)
    model.fit(x.numpy(), y, epochs=1, batch_size=4, verbose=0)  # weights change in place
    after = planned(model, x)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, layer_by_layer(model.eval(), x))
    model[2].kernel_size = 4  # a configuration changed: another plan (and the layer's error)
    with ember.no_grad(), pytest.raises(ValueError):
        model(x)
    model[2].kernel_size = 2
    setattr(model, "0", nn.Conv2d(1, 32, 3, padding=1))  # a layer replaced
    np.testing.assert_array_equal(planned(model, x), layer_by_layer(model.eval(), x))


def test_threads_may_share_a_model(rng):
    ember.manual_seed(5)
    model = models.cnn((3, 16, 16), 10).eval()
    inputs = [images(rng, (b, 3, 16, 16)) for b in (1, 2, 3)]
    want = [layer_by_layer(model, x) for x in inputs]
    def work(i):
        with ember.no_grad():
            for _ in range(30):
                np.testing.assert_array_equal(model(inputs[i % 3]).numpy(), want[i % 3])

    run_threads(work, 6)


def test_weights_that_no_longer_fit_the_plan_make_a_new_one(rng):
    ember.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = images(rng, (2, 3, 8, 8))
    planned(model, x)
    conv = model[0]
    keep = conv.weight._data
    conv.weight._data = keep.astype(np.float64)  # another dtype: the layer-by-layer forward decides
    with ember.no_grad(), pytest.raises(TypeError, match=r"Conv2d: input has dtype float32 but the weights are"):
        model(x)
    conv.weight._data = keep
    np.testing.assert_array_equal(planned(model, x), layer_by_layer(model, x))
    conv.weight._data = keep[:, :, :2].copy()  # a 2x3 kernel: another output shape than the plan's
    with ember.no_grad(), pytest.raises(ValueError, match=r"Linear\(144, 5\): input has 168 features"):
        model(x)
    conv.weight._data = keep
    np.testing.assert_array_equal(planned(model, x), layer_by_layer(model, x))


def test_the_native_plan_checks_its_steps_and_arguments():
    conv = (inference.CONV, (1, 1, 0, 0, 1, 1, 1), (1, 4, 6, 6), True, (4, 3, 3, 3))
    flat = (inference.RESHAPE, (), (1, 144), False, None)
    fc = (inference.LINEAR, (1, 144), (1, 5), False, (5, 144))
    plan = ember._C.InferencePlan((1, 3, 8, 8), [conv, flat, fc])
    x = np.ones((1, 3, 8, 8), np.float32)
    w, b = np.ones((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)
    fw = np.full((5, 144), 0.5, np.float32)
    np.testing.assert_array_equal(plan.run(x, [w, b, fw, None]), np.full((1, 5), 27 * 144 * 0.5, np.float32))
    bad_plans = {
        r"unknown kind 9": [(9, (), (1, 3, 8, 8), False, None)],
        r"takes 7 args, got 2": [(inference.CONV, (1, 1), (1, 4, 6, 6), False, (4, 3, 3, 3))],
        r"weight must be 4-D": [(inference.CONV, conv[1], (1, 4, 6, 6), False, (4, 27))],
        r"cannot reshape": [conv, (inference.RESHAPE, (), (1, 145), False, None)],
        r"a linear of weight \(5, 144\) cannot take": [fc],
        r"only a convolution or a linear fuses a ReLU": [(inference.RELU, (), (1, 3, 8, 8), True, None)],
        r"needs a step that computes": [(inference.RESHAPE, (), (1, 192), False, None)],
        # sizes whose products would wrap around in int64 (they once matched after wrapping)
        r"out_shape \(1, 8, 4, 2305843009213693954\) is too large":
            [(inference.RESHAPE, (), (1, 8, 4, 2**61 + 2), False, None), conv],
        r"weight_shape \(4, 3, 3, 4611686018427387904\) is too large":
            [(inference.CONV, conv[1], (1, 4, 6, 6), False, (4, 3, 3, 2**62))],
        r"out_shape \(-1, -192\) has a negative extent": [(inference.RESHAPE, (), (-1, -192), False, None), fc],
    }
    for message, steps in bad_plans.items():
        with pytest.raises(ValueError, match=message):
            ember._C.InferencePlan((1, 3, 8, 8), steps)
    with pytest.raises(ValueError, match=r"the input shape \(1, -3, 8, -8\) has a negative extent"):
        ember._C.InferencePlan((1, -3, 8, -8), [conv])
    with pytest.raises(TypeError, match=r"args must be a tuple of ints"):
        ember._C.InferencePlan((1, 3, 8, 8), [(inference.CONV, ("1",) * 7, (1, 4, 6, 6), False, (4, 3, 3, 3))])
    bad_runs = {
        r"input has shape \(2, 3, 8, 8\) but the plan was made for \(1, 3, 8, 8\)":
            (np.ones((2, 3, 8, 8), np.float32), [w, b, fw, None]),
        r"params must hold 4 arrays": (x, [w, b]),
        r"weight of step 0 has shape \(4, 3, 3, 2\)": (x, [np.ones((4, 3, 3, 2), np.float32), b, fw, None]),
        r"bias must have shape \(4,\)|bias has shape": (x, [w, np.zeros(5, np.float32), fw, None]),
    }
    for message, (xs, params) in bad_runs.items():
        with pytest.raises(ValueError, match=message):
            plan.run(xs, params)
    with pytest.raises(TypeError, match=r"weight"):
        plan.run(x, [w.astype(np.float64), b, fw, None])
    with pytest.raises(TypeError, match=r"input"):
        plan.run([[1.0]], [w, b, fw, None])


def test_a_planned_model_copies_and_pickles(rng):
    ember.manual_seed(7)
    model = models.cnn((3, 16, 16), 10).eval()
    x = images(rng, (2, 3, 16, 16))
    want = planned(model, x)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(planned(clone, x), want)


def test_a_replaced_layer_never_reuses_the_old_layers_plan(rng):
    # A layer freed and another made at its address: the plan must be the new layer's (its
    # weights, and no ReLU fused where a LeakyReLU now is).
    x = images(rng, (3, 4))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    for _ in range(20):
        setattr(model, "0", nn.Identity())
        setattr(model, "0", nn.Linear(4, 8))
        np.testing.assert_array_equal(planned(model, x), layer_by_layer(model, x))
    for _ in range(20):
        setattr(model, "1", nn.LeakyReLU(0.5))
        setattr(model, "1", nn.ReLU())
        setattr(model, "1", nn.LeakyReLU(0.5))
        np.testing.assert_array_equal(planned(model, x), layer_by_layer(model, x))


class Double(nn.Module):
    def forward(self, x):
        return x.double()


class Pair(nn.Module):
    def forward(self, x):
        return x, x * 2.0


class Nothing(nn.Module):
    def forward(self, x):
        return None


class Refuse(nn.Module):
    def forward(self, x):
        raise ValueError("Refuse: no")


def a_model_with_a_training_batch_norm(*tail):
    ember.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), *tail).eval()
    model[1].train()  # its running statistics move with each batch it sees
    return model


def test_each_layer_runs_once_whatever_a_layer_returns(rng):
    x = images(rng, (5, 4))
    model = a_model_with_a_training_batch_norm(Double(), nn.ReLU(), nn.Flatten())
    with ember.no_grad():
        y = model(x)
    assert model[1].num_batches_tracked.item() == 1  # not 2: nothing ran twice
    assert y.dtype == np.float64 and y.shape == (5, 4)
    for tail, check in (((Pair(),), lambda y: type(y) is tuple and len(y) == 2 and y[1].shape == (5, 4)),
                        ((Nothing(),), lambda y: y is None)):
        model = a_model_with_a_training_batch_norm(*tail)
        with ember.no_grad():
            assert check(model(x))  # what the last layer returned, as the layer-by-layer forward gives
        assert model[1].num_batches_tracked.item() == 1
    model = a_model_with_a_training_batch_norm(Refuse())
    with ember.no_grad(), pytest.raises(ValueError, match=r"Refuse: no"):
        model(x)
    assert model[1].num_batches_tracked.item() == 1


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_each_layer_runs_once_as_in_pytorch(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    model = a_model_with_a_training_batch_norm(Double())
    ref = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)).eval()
    ref.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    ref[1].train()
    with ember.no_grad():
        y = model(ember.tensor(x))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).double()
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    for name, t in ref[1].state_dict().items():
        np.testing.assert_allclose(getattr(model[1], name).detach().numpy(), t.numpy(), rtol=1e-5, atol=1e-7)


def test_a_model_rebuilt_from_json_keeps_the_plan(rng):
    # JSON gives the pooling layers lists: they become pairs, so the plan's key holds them.
    ember.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d([2, 2], stride=[2, 2]),
                          nn.AvgPool2d([2, 1], [1, 1], [1, 0]), nn.Flatten()).eval()
    rebuilt = nn.rebuild(json.loads(json.dumps(nn.describe(model)))).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert nn.describe(rebuilt) == nn.describe(model)
    x = images(rng, (2, 3, 8, 8))
    np.testing.assert_array_equal(planned(rebuilt, x), layer_by_layer(model, x))
    assert [steps for steps, _ in inference._PLANS[rebuilt].values()] != [None]  # planned, not layer by layer
    rebuilt[2].kernel_size = [2, 2]  # a list set later: no key can hold it, so the layers run one by one
    np.testing.assert_array_equal(planned(rebuilt, x), layer_by_layer(model, x))
