"""Module protocol: registration, traversal, modes, state_dict with PyTorch's keys and the
errors of load_state_dict; layers' shapes, defaults and repr."""

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
    assert list(sd) == ["features.0.weight", "features.0.bias", "head.weight", "head.bias", "steps"]
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
