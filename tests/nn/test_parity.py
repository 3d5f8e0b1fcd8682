"""Training parity with PyTorch: the same CNN, PyTorch's initial weights loaded through
load_state_dict, trained on the same random CIFAR-shaped batches, must follow the same loss
curve and reach the same weights (Adam, and SGD with momentum and weight decay)."""

import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def cnn(lib):
    return lib.nn.Sequential(lib.nn.Conv2d(3, 32, 3), lib.nn.ReLU(), lib.nn.MaxPool2d(2), lib.nn.Flatten(),
                             lib.nn.Linear(7200, 128), lib.nn.ReLU(), lib.nn.Linear(128, 10))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_cnn_training_matches_pytorch(device, optimizer):
    torch.manual_seed(0)
    tmodel = cnn(torch)
    model = cnn(ember)
    model.load_state_dict({k: v.detach().cpu().numpy() for k, v in tmodel.state_dict().items()})
    if optimizer == "adam":
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    else:
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    tloss_fn, loss_fn = torch.nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    for step in range(20):
        x = rng.standard_normal((8, 3, 32, 32), dtype=np.float32)
        y = rng.integers(0, 10, 8)
        topt.zero_grad()
        tloss = tloss_fn(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        opt.zero_grad()
        loss = loss_fn(model(ember.tensor(x)), ember.tensor(y))
        loss.backward()
        opt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-4, err_msg=f"step {step}")
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().cpu().numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
