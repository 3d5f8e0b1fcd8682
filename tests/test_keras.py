"""ember.keras: the classic Keras CIFAR-10 program runs as written, and each Keras habit it
leans on means what it means in Keras."""

from __future__ import annotations

import numpy as np
import pytest
from cifar_files import write_cifar

import ember
from ember import nn
from ember.callbacks import EarlyStopping
from ember.keras import Sequential, layers, losses, optimizers, utils
from ember.keras.datasets import cifar10


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def seed_cnn():
    return Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def test_the_classic_keras_cifar10_program_runs_as_written(tmp_path, monkeypatch, rng, capsys):
    write_cifar(tmp_path / "cifar-10-batches-py", rng, n=20)
    monkeypatch.setenv("EMBER_DATA", str(tmp_path))
    ember.manual_seed(0)
    # ---- the program, imports aside, as Keras's users write it
    model = seed_cnn()
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    x_train = x_train.astype('float32') / 255
    x_test = x_test.astype('float32') / 255
    y_train = utils.to_categorical(y_train, 10)
    y_test = utils.to_categorical(y_test, 10)
    model.fit(x_train, y_train, batch_size=64, epochs=2, validation_data=(x_test, y_test))
    scores = model.evaluate(x_test, y_test)
    # ----
    assert x_train.shape == (20 + 21 + 22 + 23 + 24, 32, 32, 3) and y_train.shape == (110, 10)
    loss, accuracy = scores
    probs = model.predict(x_test, verbose=0)
    assert probs.shape == (25, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    want = -np.mean(np.log(probs[np.arange(25), y_test.argmax(1)]))
    np.testing.assert_allclose(loss, want, rtol=1e-4)
    assert accuracy == np.mean(probs.argmax(1) == y_test.argmax(1))
    assert "val_accuracy" in capsys.readouterr().out


def test_load_data_has_keras_shapes_and_says_where_files_go(tmp_path, monkeypatch, rng):
    write_cifar(tmp_path / "cifar-10-batches-py", rng)
    monkeypatch.setenv("EMBER_DATA", str(tmp_path))
    (x, y), (xt, yt) = cifar10.load_data()
    native = ember.datasets.cifar10(tmp_path)
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and y.shape == (len(x), 1) and xt.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(x, native[0][0].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(yt[:, 0], native[1][1])
    monkeypatch.setenv("EMBER_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*cifar-10-python\.tar\.gz.*EMBER_DATA"):
        cifar10.load_data()
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is there but not extracted: run  tar -xzf"):
        cifar10.load_data()


def test_softmax_with_categorical_crossentropy_trains_on_the_logits(rng):
    """The softmax + categorical_crossentropy model takes the fused logits path: the same
    loss and the same gradients as the native logits model with the same weights, even
    where the softmax rounds to 0 and 1 (which log(clip(p)) could not follow)."""
    x = rng.standard_normal((8, 6)).astype(np.float32) * 30  # saturating logits
    y = rng.integers(0, 4, 8)
    keras = Sequential([layers.Dense(4, activation="softmax", input_shape=(6,))])
    native = nn.Sequential(nn.Linear(6, 4))
    native.load_state_dict({"0." + k.rsplit(".", 1)[1]: v for k, v in keras.state_dict().items()})
    keras.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    native.compile(optimizer="sgd", lr=0.1, loss="cross_entropy")
    hk = keras.fit(x, utils.to_categorical(y, 4), batch_size=8, epochs=3, shuffle=False, verbose=0)
    hn = native.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(hk.history["loss"], hn.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(keras.dense.linear.weight.detach().numpy(), native[0].weight.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert np.isfinite(hk.history["loss"]).all()


def test_loss_names_mean_what_they_mean_in_keras(rng):
    logits = ember.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    labels = np.array([0, 2, 1, 1, 0])
    probs = ember.tensor(np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True))
    want = float(nn.functional.cross_entropy(logits, labels).item())
    cce, scce = losses.CategoricalCrossentropy(), losses.SparseCategoricalCrossentropy()
    np.testing.assert_allclose(cce(probs, utils.to_categorical(labels, 3)).item(), want, rtol=1e-5)
    np.testing.assert_allclose(scce(probs, labels.reshape(-1, 1)).item(), want, rtol=1e-5)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(logits, labels).item(), want,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="for class indices use sparse_categorical_crossentropy"):
        cce(probs, labels)
    with pytest.raises(ValueError, match="not probabilities .* from_logits=True"):
        cce(logits * 10, utils.to_categorical(labels, 3))
    with pytest.raises(ValueError, match="for one-hot or probability targets use categorical_crossentropy"):
        scce(probs, utils.to_categorical(labels, 3))


def test_accuracy_reads_one_hot_and_keras_shaped_labels(rng):
    scores = rng.standard_normal((10, 4))
    labels = scores.argmax(1)
    labels[:3] = (labels[:3] + 1) % 4
    for y_true in (labels, labels.reshape(-1, 1), utils.to_categorical(labels, 4)):
        assert ember.metrics.accuracy(y_true, scores) == 0.7
        m = ember.metrics.get("accuracy")
        m.update(y_true, scores)
        assert m.result() == 0.7


def test_layers_infer_their_sizes_and_build_on_first_data(rng):
    model = Sequential()
    model.add(layers.Conv2D(4, 3, padding="same", activation="relu"))
    model.add(layers.BatchNormalization())
    model.add(layers.MaxPooling2D(padding="same"))
    model.add(layers.Dropout(0.25))
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(3, activation="softmax"))
    assert not model.built
    model.compile(optimizer="adam", learning_rate=0.01, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = rng.random((16, 7, 7, 2)).astype(np.float32), rng.integers(0, 3, (16, 1))
    history = model.fit(x, y, batch_size=4, epochs=2, steps_per_epoch=2, verbose=0)
    assert model.built and model.input_shape == (7, 7, 2) and len(history.history["loss"]) == 2
    assert model._compiled.optimizer.param_groups[0]["lr"] == 0.01
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "conv2d (Conv2D)" in text and "(None, 7, 7, 4)" in text and "(None, 4, 4, 4)" in text
    assert "batch_normalization (BatchNormalization)" in text and "(None, 3)" in text
    total = sum(p.numel() for p in model.parameters())
    assert total == (2 * 9 * 4 + 4) + (4 + 4) + (4 * 3 + 3) and f"Total params: {total:,}" in text
    assert model.predict(x, verbose=0).shape == (16, 3)


def test_keras_arguments_are_checked():
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.Dense(3, activation="relux")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.Conv2D(3, 3, padding="full")
    with pytest.raises(ValueError, match="Dense takes .* add Flatten"):
        Sequential([layers.Dense(3, input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        Sequential([layers.Dense(3, input_shape=(4,))]).compile(optimizer="adamm", loss="mse")
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([layers.Dense(3, input_shape=(4,))]).fit(np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="not built yet"):
        Sequential([layers.Dense(3)]).summary()
    for make, error, match in [
        (lambda: layers.Dropout("0.5"), TypeError, "Dropout: rate must be a real number, got str"),
        (lambda: layers.Dropout(1.0), ValueError, r"Dropout: rate must be in \[0, 1\), got 1.0"),
        (lambda: layers.BatchNormalization(momentum="0.9"), TypeError, "momentum must be a real number"),
        (lambda: layers.Dense(3, input_shape="8"), TypeError, "Dense: input_shape must be a tuple of ints"),
        (lambda: layers.Dense(3, input_shape=(4, 0)), ValueError, "Dense: input_shape must be positive ints"),
        (lambda: layers.Dense(3, name=7), TypeError, "Dense: name must be a str"),
    ]:
        with pytest.raises(error, match=match):
            make()
    assert layers.Dense(3, input_shape=8).input_shape == (8,)  # one int: a 1-D input, as Input(shape=8)


def test_a_layer_that_does_not_fit_is_not_kept(rng):
    model = Sequential([layers.Input((6,)), layers.Dense(4, activation="relu")])
    with pytest.raises(ValueError, match="Conv2D takes images"):
        model.add(layers.Conv2D(2, 3))  # on (batch, features): Keras drops the layer and raises
    assert len(model.layers) == 1 and model.input_shape == (6,)
    model.add(layers.Dense(2))
    x = rng.standard_normal((3, 6)).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (3, 2)
    first = Sequential()
    with pytest.raises(ValueError, match="Dense takes .* add Flatten"):
        first.add(layers.Dense(3, input_shape=(4, 4, 1)))  # the first layer's own shape goes with it
    assert len(first.layers) == 0 and first.input_shape is None


def test_to_categorical():
    np.testing.assert_array_equal(utils.to_categorical([[2], [0]], 3), [[0, 0, 1], [1, 0, 0]])
    assert utils.to_categorical(np.array([1, 3])).shape == (2, 4)
    assert utils.to_categorical([1], 2).dtype == np.float32
    with pytest.raises(ValueError, match="holds the class 3 but num_classes is 3"):
        utils.to_categorical([3], 3)
    with pytest.raises(ValueError, match="negative class"):
        utils.to_categorical([-1], 3)
    with pytest.raises(ValueError, match="integer class indices"):
        utils.to_categorical([0.5], 3)


def test_help_shows_the_real_signatures():
    import inspect

    fit = inspect.signature(nn.Linear(2, 2).fit)
    assert {"batch_size", "epochs", "validation_data", "steps_per_epoch", "resume_from"} <= set(fit.parameters)
    assert list(inspect.signature(nn.Module.predict).parameters)[:2] == ["self", "x"]
    assert "verbose" in inspect.signature(nn.Module.predict).parameters


def test_image_outputs_come_back_channels_last(rng):
    """Inputs are channels last (NHWC); a model whose output is an image returns it NHWC too."""
    model = Sequential([layers.Conv2D(3, 1, use_bias=False, input_shape=(4, 5, 3))])
    with ember.no_grad():
        model.layers[0].conv.weight[...] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    model.compile("sgd", "mse")
    x = rng.random((6, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), x, rtol=1e-6)  # the identity: the very images back
    assert model.evaluate(x, x, verbose=0) == pytest.approx(0.0, abs=1e-10)
    assert Sequential([layers.Conv2D(2, 3, input_shape=(8, 6, 1))]).predict(np.zeros((1, 8, 6, 1),
                                                                                    np.float32)).shape == (1, 6, 4, 2)


def test_metrics_see_probabilities_when_the_loss_takes_the_softmax(rng):
    class LargestScore(ember.metrics.Metric):
        name = "largest"

        def __init__(self):
            self.reset()

        def update(self, y_true, y_pred):
            self.value = max(self.value, float(np.max(y_pred.numpy())))

        def result(self):
            return self.value

        def reset(self):
            self.value = -np.inf

    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(8,))])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[LargestScore(), "accuracy"])
    x, y = (rng.standard_normal((32, 8)) * 10).astype(np.float32), rng.integers(0, 3, 32)
    loss, largest, accuracy = model.evaluate(x, y, verbose=0)
    probs = model.predict(x)
    assert largest == pytest.approx(probs.max()) and largest <= 1.0
    assert accuracy == pytest.approx(np.mean(probs.argmax(1) == y))


def test_batch_normalization_epsilon_must_be_positive():
    for epsilon in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match=r"BatchNormalization: epsilon must be > 0"):
            layers.BatchNormalization(epsilon=epsilon, input_shape=(4,))


# ---- Keras's optimizers compute Keras's updates, with Keras's arguments


def keras_rmsprop(w, grads, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                  weight_decay=0.0):
    """Keras 3's RMSprop.update_step (after the base optimizer's weight decay), in NumPy."""
    v = a = buf = 0.0
    for g in grads:
        w = w - w * weight_decay * learning_rate
        v = rho * v + (1 - rho) * g * g
        if centered:
            a = rho * a + (1 - rho) * g
        increment = learning_rate * g / np.sqrt(v - a * a + epsilon if centered else v + epsilon)
        buf = momentum * buf + increment if momentum > 0 else increment
        w = w - buf
    return w


def keras_adam(w, grads, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
               weight_decay=0.0):
    """Keras 3's Adam.update_step (after the base optimizer's weight decay), in NumPy."""
    m = v = v_hat = 0.0
    for t, g in enumerate(grads, 1):
        w = w - w * weight_decay * learning_rate
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        v_hat = np.maximum(v_hat, v)
        alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w = w - m * alpha / (np.sqrt(v_hat if amsgrad else v) + epsilon)
    return w


def keras_sgd(w, grads, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Keras 3's SGD.update_step (after the base optimizer's weight decay), in NumPy."""
    m = 0.0
    for g in grads:
        w = w - w * weight_decay * learning_rate
        if momentum:
            m = momentum * m - learning_rate * g
            w = w + (momentum * m - learning_rate * g if nesterov else m)
        else:
            w = w - learning_rate * g
    return w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # the fused step and the per-array one
@pytest.mark.parametrize("make, reference", [
    (lambda: optimizers.RMSprop(), keras_rmsprop),
    (lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
     lambda w, g: keras_rmsprop(w, g, 0.01, 0.8, 0.5, centered=True)),
    (lambda: optimizers.Adam(), keras_adam),
    (lambda: optimizers.Adam(0.01, beta_2=0.9, epsilon=1e-3, amsgrad=True),
     lambda w, g: keras_adam(w, g, 0.01, beta_2=0.9, epsilon=1e-3, amsgrad=True)),
    (lambda: optimizers.AdamW(0.01, weight_decay=0.1), lambda w, g: keras_adam(w, g, 0.01, weight_decay=0.1)),
    # Keras's weight_decay, which every optimizer takes: p -= p * weight_decay * lr before the update
    (lambda: optimizers.Adam(0.01, weight_decay=0.1), lambda w, g: keras_adam(w, g, 0.01, weight_decay=0.1)),
    (lambda: optimizers.RMSprop(0.01, momentum=0.5, weight_decay=0.2),
     lambda w, g: keras_rmsprop(w, g, 0.01, momentum=0.5, weight_decay=0.2)),
    (lambda: optimizers.SGD(0.1, weight_decay=0.3), lambda w, g: keras_sgd(w, g, 0.1, weight_decay=0.3)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, weight_decay=0.3),
     lambda w, g: keras_sgd(w, g, 0.1, 0.9, weight_decay=0.3)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.3),
     lambda w, g: keras_sgd(w, g, 0.1, 0.9, nesterov=True, weight_decay=0.3)),
])
def test_optimizers_make_keras_updates(rng, dtype, make, reference):
    """Small gradients, where epsilon sits matters: RMSprop's step for a gradient of 1e-4
    is 3.1e-4 with Keras's epsilon (inside the root), 10 times that with PyTorch's."""
    w0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) * scale for scale in (1e-4, 1e-5, 1.0, 1e-3)]
    p = nn.Parameter(ember.tensor(w0.astype(dtype)))
    opt = make().build([p])
    for g in grads:
        p.grad = ember.tensor(g.astype(dtype))
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), reference(w0, grads), rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("make", [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.RMSprop])
@pytest.mark.parametrize("clip, want_a, want_b", [
    ({"clipnorm": 5.0}, [3.0, 4.0], [2.0]),  # each parameter's own 2-norm: 10 down to 5, 2 left as is
    ({"global_clipnorm": 5.0}, np.array([3.0, 4.0]) * 10 / np.sqrt(104), [10 / np.sqrt(104)]),  # both: sqrt(104)
    ({"clipvalue": 5.0}, [5.0, 5.0], [2.0]),  # each entry into [-5, 5]
])
def test_optimizers_clip_gradients_as_keras(make, clip, want_a, want_b):
    """Keras's base optimizer clips the gradients before the update: each optimizer steps as
    the same one unclipped does on the clipped gradients (with SGD at learning rate 1, the step
    is the clipped gradient itself)."""
    clipped = [nn.Parameter(ember.zeros(2)), nn.Parameter(ember.zeros(1))]
    plain = [nn.Parameter(ember.zeros(2)), nn.Parameter(ember.zeros(1))]
    for params, grads, opt in ((clipped, ([6.0, 8.0], [2.0]), make(1.0, **clip)), (plain, (want_a, want_b), make(1.0))):
        opt = opt.build(params)
        for p, g in zip(params, grads):
            p.grad = ember.tensor(np.array(g, np.float32))
        opt.step()
    for c, p in zip(clipped, plain):
        np.testing.assert_allclose(c.detach().numpy(), p.detach().numpy(), rtol=1e-5)
    if make is optimizers.SGD:
        np.testing.assert_allclose(-clipped[0].detach().numpy(), want_a, rtol=1e-6)
        np.testing.assert_allclose(-clipped[1].detach().numpy(), want_b, rtol=1e-6)


def test_rmsprop_default_step_is_keras():
    p = nn.Parameter(ember.zeros(1))
    opt = optimizers.RMSprop().build([p])
    p.grad = ember.tensor(np.array([1e-4], np.float32))
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), [-0.001 * 1e-4 / np.sqrt(0.1 * 1e-8 + 1e-7)], rtol=1e-5)


def test_sgd_nesterov_without_momentum_is_plain_sgd(rng):
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.integers(0, 2, 8)
    weights = []
    for opt in (optimizers.SGD(0.1, nesterov=True), optimizers.SGD(0.1)):
        ember.manual_seed(0)
        model = Sequential([layers.Dense(2, input_shape=(3,))])
        model.compile(optimizer=opt, loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        weights.append(model.layers[0].linear.weight.detach().numpy())
    np.testing.assert_array_equal(*weights)


@pytest.mark.parametrize("make, error, match", [
    (lambda: optimizers.SGD(learning_rate="0.1"), TypeError, "SGD: learning_rate must be a real number, got str"),
    (lambda: optimizers.Adam(learning_rate=0), ValueError, "Adam: learning_rate must be > 0, got 0"),
    (lambda: optimizers.Adam(learning_rate=float("nan")), ValueError, "Adam: learning_rate must be > 0"),
    (lambda: optimizers.Adam(beta_1=1.0), ValueError, r"Adam: beta_1 must be in \[0, 1\), got 1.0"),
    (lambda: optimizers.AdamW(beta_2=-0.1), ValueError, r"AdamW: beta_2 must be in \[0, 1\)"),
    (lambda: optimizers.AdamW(weight_decay=-1), ValueError, "AdamW: weight_decay must be >= 0"),
    (lambda: optimizers.RMSprop(rho=1.5), ValueError, r"RMSprop: rho must be in \[0, 1\), got 1.5"),
    (lambda: optimizers.RMSprop(momentum=-0.5), ValueError, "RMSprop: momentum must be >= 0"),
    (lambda: optimizers.SGD(momentum=None), TypeError, "SGD: momentum must be a real number"),
    (lambda: optimizers.Adam(epsilon=0), ValueError, "Adam: epsilon must be > 0"),
    (lambda: optimizers.RMSprop(centered="yes"), TypeError, "RMSprop: centered must be True or False"),
    (lambda: optimizers.get("sgd", learning_rate=-1), ValueError, "SGD: learning_rate must be > 0"),
    (lambda: optimizers.SGD(weight_decay=-0.1), ValueError, "SGD: weight_decay must be >= 0, got -0.1"),
    (lambda: optimizers.Adam(clipnorm=0), ValueError, "Adam: clipnorm must be > 0, got 0"),
    (lambda: optimizers.RMSprop(global_clipnorm=float("inf")), ValueError, "RMSprop: global_clipnorm must be > 0"),
    (lambda: optimizers.AdamW(clipvalue="1"), TypeError, "AdamW: clipvalue must be a real number, got str"),
    (lambda: optimizers.AdamW(weight_decay=None), TypeError, "AdamW: weight_decay must be a real number >= 0"),
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=0.5), ValueError,
     "SGD: give at most one of clipnorm, clipvalue and global_clipnorm .Keras's rule., got clipnorm and clipvalue"),
    (lambda: optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0), ValueError,
     "got clipnorm and global_clipnorm"),
])
def test_optimizer_arguments_are_checked_with_keras_names(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_to_categorical_keeps_the_sample_axis_of_one_label():
    assert utils.to_categorical([2], 3).shape == (1, 3)
    assert utils.to_categorical(np.array([[2]]), 3).shape == (1, 3)  # Keras's (N, 1) labels
    assert utils.to_categorical(2, 3).shape == (3,)


# ---- the Keras losses: reduction, class_weight, NumPy outputs, checked arguments, the functions


def test_keras_losses_reduce_as_asked(rng):
    probs = rng.dirichlet(np.ones(4), 5).astype(np.float32)
    labels = rng.integers(0, 4, 5)
    per_sample = -np.log(probs[np.arange(5), labels])
    onehot = utils.to_categorical(labels, 4)
    for reduction, want in [("sum_over_batch_size", per_sample.mean()), ("mean", per_sample.mean()),
                            ("sum", per_sample.sum()), ("none", per_sample), (None, per_sample)]:
        for loss, target in [(losses.CategoricalCrossentropy(reduction=reduction), onehot),
                             (losses.SparseCategoricalCrossentropy(reduction=reduction), labels),
                             (losses.SparseCategoricalCrossentropy(True, reduction=reduction), labels)]:
            out = probs if not loss.from_logits else np.log(probs)
            np.testing.assert_allclose(loss(ember.tensor(out), target).detach().numpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match="reduction must be one of 'sum_over_batch_size'"):
        losses.CategoricalCrossentropy(reduction="average")


@pytest.mark.parametrize("loss, one_hot", [("categorical_crossentropy", True),
                                           ("sparse_categorical_crossentropy", False)])
def test_class_weight_with_the_keras_losses(rng, loss, one_hot):
    """Each sample's loss times its class's weight (one-hot rows: their argmax), averaged over the
    batch; the step follows that loss's gradient."""
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0, 2])
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer=optimizers.SGD(0.1), loss=loss)
    dense = model.layers[0].linear
    w0, b0 = dense.weight.detach().numpy().copy(), dense.bias.detach().numpy().copy()
    probs = model.predict(x).astype(np.float64)
    history = model.fit(x, utils.to_categorical(y, 3) if one_hot else y.reshape(-1, 1), batch_size=6, epochs=1,
                        shuffle=False, class_weight=weights, verbose=0)
    w = np.array([weights[c] for c in y])
    np.testing.assert_allclose(history.history["loss"], [np.mean(w * -np.log(probs[np.arange(6), y]))], rtol=1e-5)
    d_logits = w[:, None] * (probs - np.eye(3)[y]) / 6
    np.testing.assert_allclose(dense.weight.detach().numpy(), w0 - 0.1 * d_logits.T @ x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dense.bias.detach().numpy(), b0 - 0.1 * d_logits.sum(0), rtol=1e-4, atol=1e-6)


def test_keras_losses_take_numpy_outputs_and_check_their_arguments(rng):
    probs = rng.dirichlet(np.ones(3), 4)
    labels = np.array([0, 2, 1, 1])
    want = np.mean(-np.log(probs[np.arange(4), labels]))
    np.testing.assert_allclose(losses.CategoricalCrossentropy()(probs, utils.to_categorical(labels, 3)).item(), want,
                               rtol=1e-6)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy()(probs, labels).item(), want, rtol=1e-6)
    with pytest.raises(TypeError, match=r"y_pred \(the first argument, the model's output\) must be an ember Tensor"):
        losses.CategoricalCrossentropy()("probs", utils.to_categorical(labels, 3))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
            losses.CategoricalCrossentropy(label_smoothing=bad)
    with pytest.raises(TypeError, match="label_smoothing must be a real number"):
        losses.CategoricalCrossentropy(label_smoothing=None)


def test_keras_loss_functions_give_per_sample_losses(rng):
    logits = rng.standard_normal((5, 3)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 3, 5)
    want = -np.log(probs[np.arange(5), labels])
    onehot = utils.to_categorical(labels, 3)
    np.testing.assert_allclose(losses.categorical_crossentropy(onehot, probs).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(losses.categorical_crossentropy(onehot, logits, from_logits=True).numpy(), want,
                               rtol=1e-5)
    smooth = onehot * 0.8 + 0.2 / 3
    np.testing.assert_allclose(losses.categorical_crossentropy(onehot, probs, label_smoothing=0.2).numpy(),
                               -(smooth * np.log(probs)).sum(1), rtol=1e-5)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels.reshape(-1, 1), probs).numpy(), want,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, logits, from_logits=True).numpy(),
                               want, rtol=1e-5)
    # Given to compile, as Keras code does, they stand for their loss objects.
    x = rng.standard_normal((5, 5)).astype(np.float32)
    for loss, target in ((losses.categorical_crossentropy, onehot), (losses.sparse_categorical_crossentropy, labels)):
        ember.manual_seed(3)
        model = Sequential([layers.Dense(3, activation="softmax", input_shape=(5,))])
        model.compile("sgd", loss)
        first = model.fit(x, target, epochs=2, verbose=0).history["loss"]
        ember.manual_seed(3)
        named = Sequential([layers.Dense(3, activation="softmax", input_shape=(5,))])
        named.compile("sgd", loss.__name__)
        assert first == named.fit(x, target, epochs=2, verbose=0).history["loss"]
    with pytest.raises(TypeError, match=r"takes \(y_true, y_pred\), Keras's order"):
        losses.categorical_crossentropy(ember.tensor(probs, requires_grad=True), onehot)


def test_a_softmax_model_keeps_its_losss_reduction(rng):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    totals = []
    for reduction in ("sum_over_batch_size", "sum"):
        ember.manual_seed(5)
        model = Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
        model.compile("sgd", losses.SparseCategoricalCrossentropy(reduction=reduction))
        totals.append(model.evaluate(x, y, verbose=0))  # one batch: the batch's loss as reduced
    assert totals[1] == pytest.approx(6 * totals[0], rel=1e-5)  # the sum of the six, not their mean


def test_a_plain_adam_state_resumes_into_keras_adam(tmp_path):
    # Checkpoints of Keras-compiled models once recorded ember.optim.Adam; Keras's Adam keeps that state.
    from ember import checkpoint

    ember.manual_seed(4)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    plain = ember.optim.Adam(model.parameters(), lr=1e-2)
    model.compile(plain, "sparse_categorical_crossentropy")
    x, y = np.ones((4, 4), np.float32), np.array([0, 1, 2, 0])
    model.fit(x, y, verbose=0)
    path = checkpoint.save(tmp_path / "old.safetensors", model, plain)
    keras_adam = optimizers.Adam(learning_rate=1e-2).build(model.parameters())
    checkpoint.load(path, model, keras_adam)
    assert keras_adam.state_dict()["state"].keys() == plain.state_dict()["state"].keys()
    with pytest.raises(ValueError, match="holds the state of a KerasAdam optimizer, not of a Adam"):
        checkpoint.load(checkpoint.save(tmp_path / "new.safetensors", model, keras_adam), model,
                        ember.optim.Adam(model.parameters()))


def test_batch_normalization_builds_and_layers_follow_the_models_mode(rng):
    model = Sequential([layers.Dense(8, input_shape=(4,)), layers.BatchNormalization()])
    assert model.training and model.layers[1].bn.training  # built on one sample, left to train
    x = rng.standard_normal((16, 4)).astype(np.float32)
    model.compile("sgd", "mse")
    model.fit(x, rng.standard_normal((16, 8)).astype(np.float32), epochs=1, batch_size=16, verbose=0)
    assert model.layers[1].bn.num_batches_tracked.item() == 1  # its statistics were updated
    model.fit(x[:1], rng.standard_normal((1, 8)).astype(np.float32), epochs=1, verbose=0)  # one sample: as Keras
    model.eval()
    model.add(layers.Dropout(0.5))  # added in evaluation mode: it evaluates
    with ember.no_grad():
        once, twice = model(ember.tensor(x)).numpy(), model(ember.tensor(x)).numpy()
    np.testing.assert_array_equal(once, twice)


# ---- Keras's rules for fit's split, BatchNormalization's statistics, grouped kernels, metric names


@pytest.mark.parametrize("n, validation_split, trained", [
    (10, 0.25, 7), (5, 0.5, 2), (30, 0.15, 25), (10, 0.05, 9),
    (10, 0.8, 1),  # 10 * (1 - 0.8) is 1.9999999999999996 in floats: Keras trains on 1 sample
])
def test_validation_split_is_keras_split(n, validation_split, trained):
    """Keras trains on the first floor(n * (1 - validation_split)) samples, validates on the rest."""
    seen = []

    def targets(y_true, y_pred):
        seen.append(y_true.numpy().ravel().tolist())
        return 0.0

    model = Sequential([layers.Dense(1, input_shape=(1,))])
    model.compile("sgd", "mse", metrics=[targets])
    y = np.arange(n, dtype=np.float32).reshape(-1, 1)
    model.fit(y, y, batch_size=n, epochs=1, shuffle=False, validation_split=validation_split, verbose=0)
    assert seen == [list(range(trained)), list(range(trained, n))]  # one training batch, then the validation


@pytest.mark.parametrize("n, validation_split", [(5, 0.8), (1, 0.5)])
def test_a_validation_split_that_leaves_a_side_empty_is_refused(n, validation_split):
    model = Sequential([layers.Dense(1, input_shape=(1,))])
    model.compile("sgd", "mse")
    y = np.arange(n, dtype=np.float32).reshape(-1, 1)
    with pytest.raises(ValueError, match=f"validation_split={validation_split} leaves no training or no validation"):
        model.fit(y, y, validation_split=validation_split, verbose=0)


def test_batch_normalization_keeps_keras_moving_statistics():
    """Keras's moving variance takes the batch's biased variance: 3.5 for [0, 1, 2, 5], not
    PyTorch's 14 / 3."""
    values = np.array([0.0, 1.0, 2.0, 5.0], np.float32)
    want = (values - 2.0) / np.sqrt(3.5 + 1e-3)
    for shape in ((4, 1), (1, 1, 2, 2)):  # features, and an image's pixels (NCHW inside a model)
        x = ember.tensor(values.reshape(shape))
        instant, default = layers.BatchNormalization(momentum=0.0), layers.BatchNormalization()
        np.testing.assert_allclose(instant(x).detach().numpy().ravel(), want, rtol=1e-5)  # by the batch's statistics
        default(x)
        np.testing.assert_allclose(instant.bn.running_mean.numpy(), [2.0], rtol=1e-6)
        np.testing.assert_allclose(instant.bn.running_var.numpy(), [3.5], rtol=1e-6)
        np.testing.assert_allclose(default.bn.running_mean.numpy(), [0.01 * 2.0], rtol=1e-6)
        np.testing.assert_allclose(default.bn.running_var.numpy(), [0.99 + 0.01 * 3.5], rtol=1e-6)
        instant.eval()
        np.testing.assert_allclose(instant(x).detach().numpy().ravel(), want, rtol=1e-5)  # by the moving statistics
    one = layers.BatchNormalization(momentum=0.0)
    np.testing.assert_array_equal(one(ember.tensor([[4.0]])).detach().numpy(), [[0.0]])  # one sample: the bias
    assert one.bn.running_var.item() == 0.0


def test_grouped_conv2d_has_keras_glorot_limit():
    """Keras's fans come from the kernel's shape (3, 3, 8 / 4, 8): fan_in 9 * 2, fan_out 9 * 8."""
    ember.manual_seed(0)
    model = Sequential([layers.Conv2D(8, 3, groups=4, input_shape=(5, 5, 8))])
    w = np.abs(model.layers[0].conv.weight.detach().numpy())
    limit = np.sqrt(6 / (9 * 2 + 9 * 8))  # 0.258
    assert w.shape == (8, 2, 3, 3) and w.max() <= limit and w.max() > 0.95 * limit


def test_a_metric_given_by_name_logs_under_that_name(rng):
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([layers.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc", "top1"])
    history = model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[EarlyStopping(monitor="val_acc")],
                        verbose=0)
    assert set(history.history) == {"loss", "acc", "top1", "samples_per_s", "lr", "val_loss", "val_acc", "val_top1"}
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert list(logs) == ["loss", "acc", "top1"] and logs["acc"] == logs["top1"]


def test_compile_clips_each_gradient_or_all_of_them_together():
    """A Linear from zero on x = [3, 4], y = 1 with the squared error: the gradients are
    [-6, -8] (norm 10) and [-2] (norm 2). ``clipnorm=5`` clips each to 5 on its own (Keras's
    clipnorm), ``global_clipnorm=5`` both together, from sqrt(104)."""
    x, y = np.array([[3.0, 4.0]], np.float32), np.array([[1.0]], np.float32)
    scale = 5 / np.sqrt(104)
    for clip, weight, bias in [({"clipnorm": 5}, [3.0, 4.0], [2.0]),
                               ({"global_clipnorm": 5}, [6 * scale, 8 * scale], [2 * scale]),
                               ({}, [6.0, 8.0], [2.0])]:
        model = nn.Linear(2, 1)
        with ember.no_grad():
            model.weight[...] = 0.0
            model.bias[...] = 0.0
        model.compile(optimizer="sgd", lr=1.0, loss="mse", **clip)
        model.fit(x, y, batch_size=1, epochs=1, verbose=0)
        np.testing.assert_allclose(model.weight.detach().numpy(), [weight], rtol=1e-6)
        np.testing.assert_allclose(model.bias.detach().numpy(), bias, rtol=1e-6)
    with pytest.raises(ValueError, match="compile: give clipnorm .* or global_clipnorm .*, not both"):
        model.compile(optimizer="sgd", loss="mse", clipnorm=1.0, global_clipnorm=1.0)
    for bad in (0, -1.0, float("inf"), float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"compile: global_clipnorm must be a positive number or None"):
            model.compile(optimizer="sgd", loss="mse", global_clipnorm=bad)
