"""The seed CNN trains on the GPU through the same code as on the CPU: Ember's CUDA kernels for
the GEMMs, the convolution, pooling, ReLU, cross-entropy and the fused Adam step, CuPy for the
rest. Twenty steps on the GPU give the CPU run's losses within 1e-3 relative."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS

import ember
from ember import nn

pytestmark = CUDA_MARKS


def seed_cnn():
    return nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(7200, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def train(model, x, y, device, steps, batch=64):
    model.to(device)
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for s in range(steps):
        xb = ember.tensor(x[s * batch:(s + 1) * batch], device=device)
        yb = ember.tensor(y[s * batch:(s + 1) * batch], device=device)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model


def test_seed_cnn_twenty_adam_steps_match_the_cpu(rng):
    steps = 20
    x = rng.standard_normal((steps * 64, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, steps * 64)
    ember.manual_seed(0)
    cpu_model = seed_cnn()
    gpu_model = seed_cnn()
    gpu_model.load_state_dict(cpu_model.state_dict())
    cpu_losses, cpu_model = train(cpu_model, x, y, "cpu", steps)
    gpu_losses, gpu_model = train(gpu_model, x, y, "cuda", steps)
    assert gpu_model[0].weight.device == "cuda"
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-3)
    for (name, a), b in zip(cpu_model.state_dict().items(), gpu_model.state_dict().values()):
        np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), rtol=2e-2, atol=2e-4, err_msg=name)


def test_fit_on_the_gpu_and_device_errors(rng):
    x = rng.standard_normal((256, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    ember.manual_seed(0)
    model = seed_cnn()
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0, device="cuda")
    assert model[4].weight.device == "cuda" and len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    scores = model.predict(x[:10])
    assert isinstance(scores, np.ndarray) and scores.shape == (10, 10)
    with pytest.raises(RuntimeError, match="'cpu' and 'cuda'"):
        model(ember.tensor(x[:2], device="cpu"))
    t = ember.ones(3, device="cuda")
    with pytest.raises(TypeError, match="cpu"):
        t.numpy()
    assert t.__cuda_array_interface__["shape"] == (3,)
    back = ember.from_dlpack(t)
    assert back.device == "cuda" and back.cpu().numpy().tolist() == [1.0, 1.0, 1.0]
