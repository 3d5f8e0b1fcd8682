"""Module protocol: registration, traversal, modes, state_dict with PyTorch's keys and the
errors of load_state_dict; layers' shapes, defaults and repr."""

from collections import OrderedDict

import numpy as np
import pytest

import ember
from ember import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, 5)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("steps", ember.zeros(1))

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(1)))


def test_registration_and_state_dict(device):
    net = Net()
    assert [k for k, _ in net.named_parameters()] == ["features.0.weight", "features.0.bias", "head.weight",
                                                      "head.bias"]
    sd = net.state_dict()
    # PyTorch's order: each module's parameters, then its buffers, before its children's.
    assert list(sd) == ["steps", "features.0.weight", "features.0.bias", "head.weight", "head.bias"]
    assert sd["head.weight"]._data is net.head.weight._data  # the storage itself, not a copy
    assert len(list(net.modules())) == 7 and len(list(net.children())) == 3
    other = Net()
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.head.weight.detach().cpu().numpy(), net.head.weight.detach().cpu().numpy())
    net.steps = ember.ones(1)  # reassigning a buffer keeps it a buffer
    assert net.state_dict()["steps"].item() == 1.0


def test_load_state_dict_lists_every_problem(device):
    net = Net()
    sd = dict(net.state_dict())
    sd.pop("head.bias")
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["head.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"missing keys: head.bias\. unexpected keys: extra.weight\. "
                                         r"wrong shapes: head.weight: expected shape \(5, 64\), got \(2, 2\)"):
        net.load_state_dict(sd)
    sd["head.weight"] = np.zeros((5, 64), np.float32)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["head.bias"] and unexpected == ["extra.weight"]
    assert (net.head.weight.detach().cpu().numpy() == 0).all()


def test_modes_zero_grad_apply_and_repr(device):
    net = Net()
    x = ember.randn(2, 3, 8, 8)
    net.eval()
    assert not net.drop.training
    with ember.no_grad():  # eval: dropout is the identity (no 1 / (1 - p) scaling either)
        np.testing.assert_array_equal(net(x).cpu().numpy(), net.head(net.features(x).flatten(1)).cpu().numpy())
    net.train()
    assert net.training and net.features[0].training
    net(x).sum().backward()
    assert net.head.weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    names = []
    net.apply(lambda m: names.append(type(m).__name__))
    assert names[-1] == "Net" and "Conv2d" in names
    assert "(head): Linear(in_features=64, out_features=5, bias=True)" in repr(net)
    with pytest.raises(ValueError, match=r"Linear\(64, 5\): input has 7 features"):
        net.head(ember.zeros(2, 7))
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'weight'"):
        net.head.weight = np.zeros((5, 64))


def test_default_initialisation_matches_pytorch_bounds(device):
    lin = nn.Linear(100, 30)
    w = lin.weight.detach().cpu().numpy()
    bound = 1 / np.sqrt(100)  # kaiming_uniform_(a=sqrt(5)) gives 1/sqrt(fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound
    conv = nn.Conv2d(8, 4, 3)
    assert np.abs(conv.bias.detach().cpu().numpy()).max() <= 1 / np.sqrt(72)


def test_reassigning_a_child_keeps_its_place():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    setattr(seq, "0", nn.Linear(2, 3))
    setattr(seq, "2", nn.Linear(3, 1))
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert list(dict(seq.named_parameters())) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_state_dict_order_and_tied_weights_as_pytorch_writes_them():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert list(ours.state_dict()) == list(theirs.state_dict())  # code that zips the two stays aligned

    class Tied(nn.Module):  # an output layer sharing the input's matrix, as GPTs do
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 6, bias=False)
            self.out = nn.Linear(6, 4, bias=False)
            self.back = nn.Linear(4, 6, bias=False)
            self.back.weight = self.inp.weight

    tied = Tied()
    assert list(tied.state_dict()) == ["inp.weight", "out.weight"]  # the tied tensor once
    w = np.arange(24, dtype=np.float32).reshape(6, 4)
    state = {"inp.weight": w, "out.weight": np.zeros((4, 6), np.float32), "back.weight": w}  # as PyTorch writes it
    tied.load_state_dict(state)
    np.testing.assert_array_equal(tied.back.weight.detach().numpy(), w)
    tied.load_state_dict({"back.weight": w + 1, "out.weight": state["out.weight"]})  # under its other name only
    np.testing.assert_array_equal(tied.inp.weight.detach().numpy(), w + 1)
    with pytest.raises(ValueError, match="back.weight: is tied to inp.weight here, but the two hold different values"):
        tied.load_state_dict(dict(state, **{"back.weight": w * 2}))
    np.testing.assert_array_equal(tied.inp.weight.detach().numpy(), w + 1)  # nothing loaded
    shared, theirs_shared = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    written = torch.nn.Sequential(theirs_shared, torch.nn.ReLU(), theirs_shared).state_dict()
    assert list(written) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    twice.load_state_dict({k: v.numpy() for k, v in written.items()})  # strict: every key is known
    np.testing.assert_array_equal(shared.weight.detach().numpy(), theirs_shared.weight.detach().numpy())
    assert list(twice.state_dict()) == ["0.weight", "0.bias"]


def test_names_are_checked_and_registrations_undone_as_in_pytorch():
    layer = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="attribute 'weight' already exists in Linear"):
        layer.register_buffer("weight", ember.zeros(2, 2))  # would have shadowed the parameter in state_dict
    layer.extra = 3
    with pytest.raises(KeyError, match="attribute 'extra' already exists"):
        layer.register_parameter("extra", nn.Parameter(ember.zeros(1)))
    with pytest.raises(KeyError, match="contain no '.'"):
        layer.register_buffer("a.b", None)
    with pytest.raises(TypeError, match="buffer name must be a str"):
        layer.register_buffer(3, None)
    layer.register_buffer("count", ember.zeros(1))
    layer.register_buffer("count", ember.ones(1))  # the same kind again replaces it
    assert layer.count.item() == 1.0
    del layer.bias, layer.count, layer.extra
    assert list(layer.state_dict()) == ["weight"] and not hasattr(layer, "extra")
    with pytest.raises(ValueError, match="train: mode must be True or False, got 'False'"):
        layer.train("False")
    assert layer.training is True


def test_containers_slice_check_and_empty_layers_build():
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3))
    head = seq[:2]
    assert type(head) is nn.Sequential and [k for k, _ in head.named_children()] == ["0", "1"] and head[0] is seq[0]
    tail = seq[1:]
    assert [k for k, _ in tail.named_children()] == ["1", "2"] and tail(ember.ones(4, 2)).shape == (4, 3)
    listed = nn.ModuleList([nn.ReLU(), nn.Linear(2, 2), nn.ReLU()])
    assert type(listed[1:]) is nn.ModuleList and len(listed[1:]) == 2 and listed[1:][0] is listed[1]
    with pytest.raises(TypeError, match="Sequential: 'act' is a function, not a Module"):
        nn.Sequential(OrderedDict(a=nn.Linear(2, 2), act=nn.functional.relu))
    # A layer of no inputs builds (PyTorch's no-op initialisation) and gives zeros, with gradients.
    empty = nn.Linear(0, 3)
    x = ember.zeros(2, 0, requires_grad=True)
    y = empty(x)
    assert y.shape == (2, 3) and not np.isnan(y.detach().numpy()).any()
    y.sum().backward()
    assert empty.weight.grad.shape == (3, 0) and x.grad.shape == (2, 0)
    assert nn.Conv2d(0, 2, 3).weight.shape == (2, 0, 3, 3)
    with pytest.raises(ValueError, match=r"Linear\(3, 2\): input has no features \(shape \(\)\)"):
        nn.Linear(3, 2)(ember.tensor(1.0))


def test_batch_norm_refuses_one_value_per_channel_in_training():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, got input of shape"):
        bn(ember.ones(1, 3))
    assert bn.num_batches_tracked.item() == 0 and (bn.running_var.numpy() == 1).all()  # the statistics untouched
    assert bn.eval()(ember.ones(1, 3)).shape == (1, 3)
    assert nn.BatchNorm2d(3)(ember.ones(1, 3, 2, 2)).shape == (1, 3, 2, 2)  # four values per channel


def test_a_buffer_shared_by_two_modules_round_trips(tmp_path):
    shared = ember.ones(3)
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    a.register_buffer("scale", shared)
    b.register_buffer("scale", shared)
    model = nn.Sequential(a, b)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "0.scale", "1.weight", "1.bias"]
    model.load_state_dict(model.state_dict())  # was: missing keys 1.scale
    ember.save(tmp_path / "m.safetensors", model)
    ember.load(tmp_path / "m.safetensors", model)


def test_assignments_keep_parameters_and_children_of_their_kind_as_pytorch():
    try:
        import torch
    except ImportError:  # optional reference
        torch = None
    for lib in ([nn] if torch is None else [nn, torch.nn]):
        seq = lib.Sequential(lib.Linear(2, 2), lib.ReLU())
        with pytest.raises(TypeError, match=r"cannot assign '?int'? as child module '1' \(.*Module or None expected\)"):
            setattr(seq, "1", 5)  # was: the child silently dropped
        assert [type(m).__name__ for m in seq.children()] == ["Linear", "ReLU"]
        layer = seq[0]
        for value in (lib.ReLU(), 3):
            with pytest.raises(TypeError, match=r"as parameter 'weight' \(.*Parameter or None expected\)"):
                layer.weight = value
        assert [k for k, _ in layer.named_parameters()] == ["weight", "bias"]
        setattr(seq, "1", None)  # None keeps the name, as an empty slot
        assert list(seq._modules) == ["0", "1"] and seq._modules["1"] is None
        layer.bias = None
        assert list(layer.state_dict()) == ["weight"] and "bias" in layer._parameters


def test_loss_weights_are_buffers_as_in_pytorch():
    w = [1.0, 2.0, 0.5]
    cases = {
        "CrossEntropyLoss": ({"weight": w}, ["weight"]),
        "NLLLoss": ({"weight": w}, ["weight"]),
        "BCEWithLogitsLoss": ({"weight": w, "pos_weight": w}, ["weight", "pos_weight"]),
    }
    for name, (weights, keys) in cases.items():
        loss = getattr(nn, name)(**{k: ember.tensor(v) for k, v in weights.items()})
        assert list(loss.state_dict()) == keys and [k for k, _ in loss.named_buffers()] == keys
        assert list(getattr(nn, name)().state_dict()) == []  # none given: None, left out
        assert getattr(nn, name)().weight is None
        listed = getattr(nn, name)(**weights)  # a list becomes a float tensor
        assert listed.weight.dtype == np.float32 and listed.weight.numpy().tolist() == w
    assert list(nn.BCEWithLogitsLoss(pos_weight=ember.tensor(w)).state_dict()) == ["pos_weight"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.loss = nn.CrossEntropyLoss(weight=ember.ones(3))

    net = Net()
    x, y = ember.tensor(np.eye(3, dtype=np.float32)), np.array([0, 1, 2])
    before = net.loss(net.fc(x), y).item()
    state = {"fc.weight": np.eye(3, dtype=np.float32), "fc.bias": np.zeros(3, np.float32),
             "loss.weight": np.array(w, np.float32)}
    net.load_state_dict(state)  # strict: 'loss.weight' is a key of the model, as in PyTorch
    np.testing.assert_array_equal(net.loss.weight.numpy(), w)
    z = np.eye(3) - np.log(np.exp(np.eye(3)).sum(1, keepdims=True))
    want = -(np.array(w) * np.diag(z)).sum() / sum(w)  # the loaded weights weigh the loss
    assert net.loss(net.fc(x), y).item() == pytest.approx(want, rel=1e-6) and before != pytest.approx(want)
    try:
        import torch
    except ImportError:  # optional reference
        return
    theirs = torch.nn.Module()
    theirs.fc, theirs.loss = torch.nn.Linear(3, 3), torch.nn.CrossEntropyLoss(weight=torch.ones(3))
    assert list(theirs.state_dict()) == list(net.state_dict())
    net.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for name, (weights, keys) in cases.items():
        assert list(getattr(torch.nn, name)(**{k: torch.tensor(v) for k, v in weights.items()}).state_dict()) == keys
        assert list(getattr(torch.nn, name)().state_dict()) == []
