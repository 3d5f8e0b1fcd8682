"""``fit`` throughput, data loading and augmentation included, against a plain PyTorch training
loop for the same model in the same run, 2 threads and 1: the CNN Conv2d(3,32,3) -> ReLU ->
MaxPool2d(2) -> Flatten -> Linear(7200,128) -> ReLU -> Linear(128,10), Adam, cross-entropy,
batch 64, one epoch of synthetic CIFAR-shaped images with random crops (padding 4) and flips.
``extra_info`` holds samples/s.

    python -m pytest benchmarks/bench_fit.py --benchmark-only --benchmark-json=fit.json
    python benchmarks/report.py fit.json
"""

import numpy as np
import pytest

import ember
from ember.data import transforms as T
from helpers import THREADS, settle, thread_limit

try:
    import torch
except ImportError:  # optional reference
    torch = None

CASES = [(t, impl) for t in THREADS for impl in ("ember", "torch")]
BATCH = 64


def data(n):
    x, y = ember.datasets.synthetic(n, shape=(3, 32, 32), classes=10, seed=0)
    return x.astype(np.float32), y


def ember_epoch(x, y):
    ember.manual_seed(0)
    model = ember.models.cnn((3, 32, 32), 10)
    model.compile(optimizer="adam", lr=1e-3, loss="cross_entropy", metrics=["accuracy"])
    augment = T.Compose([T.RandomCrop((32, 32), padding=4), T.RandomHorizontalFlip()])

    def run():
        return model.fit(x, y, batch_size=BATCH, epochs=1, transform=augment, verbose=0)

    run.model = model
    return run


def torch_epoch(x, y):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(7200, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rows = torch.arange(32).view(1, 32, 1)
    cols = torch.arange(32).view(1, 1, 32)

    def augment(xb):
        # The same augmentation, vectorised: pad, crop at a random offset per sample, flip.
        n = xb.shape[0]
        padded = torch.nn.functional.pad(xb, (4, 4, 4, 4))
        dy = torch.randint(0, 9, (n, 1, 1))
        dx = torch.randint(0, 9, (n, 1, 1))
        idx = torch.arange(n).view(n, 1, 1)
        out = padded.permute(0, 2, 3, 1)[idx, rows + dy, cols + dx].permute(0, 3, 1, 2)
        flip = torch.rand(n) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out).contiguous()

    def run():
        model.train()
        correct = 0
        for idx in torch.randperm(len(xt)).split(BATCH):
            xb, yb = augment(xt[idx]), yt[idx]
            opt.zero_grad()
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            loss.item()
            correct += int((out.argmax(1) == yb).sum())
        return correct

    return run


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[0]}t")
def bench_fit_epoch(benchmark, case):
    threads, impl = case
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (pip install 'ember[reference]')")
    n = 256 if getattr(benchmark, "disabled", False) else 2048
    x, y = data(n)
    run = (ember_epoch if impl == "ember" else torch_epoch)(x, y)
    benchmark.group = f"fit one epoch {n} images batch {BATCH} {threads}t"
    benchmark.extra_info.update(impl=impl, threads=threads)
    with thread_limit(threads):
        run()  # warm up: thread pools, caches, first-touch memory
        settle(benchmark)
        result = benchmark.pedantic(run, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["per_s"] = n / stats.stats.median
    if impl == "ember":  # the trained model's evaluation agrees with its logits, scored in NumPy
        assert np.isfinite(result.history["loss"]).all()
        z = run.model.predict(x).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        want = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), y])
        scores = run.model.evaluate(x, y)
        np.testing.assert_allclose(scores["loss"], want, rtol=1e-4)
        np.testing.assert_allclose(scores["accuracy"], np.mean(z.argmax(axis=1) == y), rtol=1e-12)


def keras_epoch(x, y):
    """The classic Keras program's model and compile, as its users write them: channels-last
    images, one-hot labels, a softmax output with categorical_crossentropy."""
    from ember.keras import Sequential, layers, utils

    ember.manual_seed(0)
    model = Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x_nhwc, y_hot = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), utils.to_categorical(y, 10)

    def run():
        return model.fit(x_nhwc, y_hot, batch_size=BATCH, epochs=1, verbose=0)

    return run


def native_epoch(x, y):
    """The same model in Ember's native style, without augmentation: NCHW, class indices, logits."""
    ember.manual_seed(0)
    model = ember.models.cnn((3, 32, 32), 10)
    model.compile(optimizer="adam", lr=1e-3, loss="cross_entropy", metrics=["accuracy"])
    return lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)


@pytest.mark.parametrize("impl", ["ember", "keras"])
def bench_keras_style_epoch(benchmark, impl):
    """The Keras-style program against the native one: the ratio is the cost of the Keras habits."""
    n = 256 if getattr(benchmark, "disabled", False) else 2048
    x, y = data(n)
    run = (native_epoch if impl == "ember" else keras_epoch)(x, y)
    benchmark.group = f"fit one epoch {n} images batch {BATCH}, keras-style vs native, {THREADS[0]}t"
    benchmark.extra_info.update(impl=impl, threads=THREADS[0])
    with thread_limit(THREADS[0]):
        first = run()
        settle(benchmark)
        history = benchmark.pedantic(run, rounds=5, iterations=1)
    # Both programs train: six epochs on the same images lower the loss well below the first's.
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < 0.9 * first.history["loss"][0], (first.history, history.history)
