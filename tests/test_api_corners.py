"""Public API that the main tests pass by: the callbacks' other modes (EarlyStopping on a
maximised log, path templates, LearningRateScheduler over a schedule object, CSVLogger
appending), compile / fit / predict / evaluate arguments, Module and container details,
gradcheck's checks, dropout's edge and the quantization report on a regression model."""

import collections

import numpy as np
import pytest

import ember
from ember import nn, quant
from ember.autograd import gradcheck
from ember.callbacks import Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from ember.data import DataLoader, TensorDataset
from ember.optim import lr_scheduler


def blobs(rng, n=64, classes=3, dim=5):
    centres = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


def mlp(dim=5, classes=3):
    return nn.Sequential(nn.Linear(dim, 8), nn.ReLU(), nn.Linear(8, classes))


class Scripted(Callback):
    """Overwrites one log with a scripted value per epoch."""

    def __init__(self, key, values):
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("mode", ["auto", "max"])
def test_early_stopping_on_a_log_to_maximise(rng, mode):
    x, y = blobs(rng)
    model = mlp()
    model.compile(optimizer="sgd", lr=0.01, metrics=["accuracy"])
    # 'accuracy' is maximised ('auto' knows it); 0.61 is not 0.02 better than 0.6.
    stop = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.02, mode=mode)
    history = model.fit(x, y, epochs=8, validation_data=(x, y), verbose=0,
                        callbacks=[Scripted("val_accuracy", [0.5, 0.6, 0.61, 0.55, 0.9, 0.9, 0.9, 0.9]), stop])
    # patience 1: the first epoch without improvement stops it (Keras's rule)
    assert history.epoch == [0, 1, 2] and stop.best == 0.6 and stop.best_epoch == 1 and stop.stopped_epoch == 2


def test_early_stopping_ignores_nan_and_checks_its_arguments(rng):
    x, y = blobs(rng)
    model = mlp()
    model.compile(optimizer="sgd", lr=0.01)
    stop = EarlyStopping(monitor="val_loss", patience=0)
    history = model.fit(x, y, epochs=5, validation_data=(x, y), verbose=0,
                        callbacks=[Scripted("val_loss", [1.0, float("nan"), 0.5, 0.4, 0.3]), stop])
    assert history.epoch == [0, 1] and stop.best == 1.0  # NaN is never an improvement
    for kwargs, match in [({"mode": "largest"}, "mode must be 'auto', 'min' or 'max'"),
                          ({"monitor": ""}, "monitor must be a log name"),
                          ({"min_delta": -1.0}, "min_delta must be >= 0"),
                          ({"patience": -1}, "patience must be an int >= 0"),
                          ({"patience": True}, "patience must be an int >= 0")]:
        with pytest.raises(ValueError, match=match):
            EarlyStopping(**kwargs)



def test_early_stopping_takes_numpy_ints_and_checks_min_delta():
    assert EarlyStopping(patience=np.int64(3)).patience == 3
    assert type(EarlyStopping(patience=np.int64(3)).patience) is int
    with pytest.raises(TypeError, match="EarlyStopping: min_delta must be a real number, got NoneType"):
        EarlyStopping(min_delta=None)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="EarlyStopping: min_delta must be finite"):
            EarlyStopping(min_delta=bad)

def test_model_checkpoint_path_template_and_verbose(rng, tmp_path, capsys):
    x, y = blobs(rng)
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2)
    ckpt = ModelCheckpoint(tmp_path / "sub" / "m-{epoch:02d}-{val_loss:.2f}.safetensors", verbose=1)
    model.fit(x, y, epochs=2, validation_data=(x, y), verbose=0, callbacks=[Scripted("val_loss", [0.25, 0.125]), ckpt])
    names = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert names == ["m-01-0.25.safetensors", "m-02-0.12.safetensors"]
    assert f"epoch 2: saved {tmp_path / 'sub' / 'm-02-0.12.safetensors'}" in capsys.readouterr().out
    fresh = mlp()
    assert fresh.load(ckpt.last_saved).epoch == 2
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    bad = ModelCheckpoint(tmp_path / "m-{val_f1}.safetensors")
    with pytest.raises(ValueError, match=r"cannot fill in the path .*m-\{val_f1\}"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[bad])


def test_learning_rate_scheduler_with_a_schedule_object(rng, capsys):
    x, y = blobs(rng)
    model = mlp()
    opt = ember.optim.SGD(model.parameters(), lr=0.8)
    model.compile(optimizer=opt)
    rates = []

    class Record(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(opt.param_groups[0]["lr"])

    model.fit(x, y, epochs=7, verbose=0,
              callbacks=[LearningRateScheduler(lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)), Record()])
    np.testing.assert_allclose(rates, [0.8 * 0.5 ** (e // 2) for e in range(7)], rtol=1e-15)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: 0.1 / (e + 1), verbose=1)])
    out = capsys.readouterr().out
    assert "epoch 1: learning rate 0.1" in out and "epoch 2: learning rate 0.05" in out
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)
    # A schedule of a metric is stepped with the monitored log at each epoch's end.
    opt = ember.optim.SGD(model.parameters(), lr=0.8)
    model.compile(optimizer=opt)
    # (no later epoch can improve by the threshold: reduced after epochs 2 and 3)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5, threshold=1e9, threshold_mode="abs")
    model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
              callbacks=[LearningRateScheduler(plateau, monitor="val_loss")])
    assert plateau.last_epoch == 3 and np.isfinite(plateau.best)
    np.testing.assert_allclose(opt.param_groups[0]["lr"], 0.8 * 0.5**2)
    with pytest.raises(KeyError, match="LearningRateScheduler: monitor 'val_loss' is not among the logs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            LearningRateScheduler(lr_scheduler.ReduceLROnPlateau(ember.optim.SGD(model.parameters(), lr=0.1)))])


def test_log_and_checkpoint_paths_and_separators_are_checked(tmp_path):
    for make, error, match in [
        (lambda: ModelCheckpoint(None), TypeError, "ModelCheckpoint: path must be a file path"),
        (lambda: ModelCheckpoint(""), ValueError, "ModelCheckpoint: path is empty"),
        (lambda: CSVLogger(None), TypeError, "CSVLogger: path must be a file path"),
        (lambda: CSVLogger(tmp_path / "a.csv", separator=""), ValueError, "separator must be one character"),
        (lambda: CSVLogger(tmp_path / "a.csv", separator="e"), ValueError, "other than a letter, a digit"),
        (lambda: CSVLogger(tmp_path / "a.csv", separator=", "), ValueError, "separator must be one character"),
    ]:
        with pytest.raises(error, match=match):
            make()
    assert CSVLogger(tmp_path / "a.tsv", separator="\t").separator == "\t"


def test_csv_logger_appends_under_the_same_header(rng, tmp_path):
    x, y = blobs(rng)
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"])
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    model.fit(x, y, epochs=3, verbose=0, callbacks=[CSVLogger(path, separator=";", append=True)])
    rows = [r.split(";") for r in path.read_text().splitlines()]
    assert rows[0][0] == "epoch" and {"accuracy", "loss"} <= set(rows[0])
    assert len(rows) == 6 and all(len(r) == len(rows[0]) for r in rows)
    assert [r[0] for r in rows[1:]] == ["0", "1", "0", "1", "2"]
    losses = [float(r[rows[0].index("loss")]) for r in rows[1:]]
    assert all(np.isfinite(losses))


def test_callbacks_must_be_callbacks(rng):
    x, y = blobs(rng)
    model = mlp()
    model.compile()
    with pytest.raises(TypeError, match="callbacks must be ember.callbacks.Callback objects, got function"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[lambda: None])


# --------------------------------------------------------------------------- compile, fit, evaluate, predict


def test_compile_and_fit_arguments(rng):
    x, y = blobs(rng)
    model = mlp()
    with pytest.raises(TypeError, match="optimizer must be a name or an ember.optim optimizer, got int"):
        model.compile(optimizer=3)
    with pytest.raises(TypeError, match="loss must be a name or a callable"):
        model.compile(loss=3)
    with pytest.raises(ValueError, match="metric names must differ"):
        model.compile(metrics=["accuracy", "accuracy"])
    model.compile()
    for kwargs, match in [({"validation_split": 1.0}, r"validation_split must be in \[0, 1\)"),
                          ({"validation_split": 0.999}, "leaves no training or no validation samples"),
                          ({"class_weight": {}}, "class_weight must be a non-empty dict"),
                          ({"class_weight": {-1: 2.0}}, "class_weight keys must be class indices >= 0"),
                          ({"batch_size": 0}, "batch_size must be an int >= 1")]:
        with pytest.raises((ValueError, TypeError), match=match):
            model.fit(x, y, epochs=1, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="validation_split needs x and y as arrays"):
        model.fit(DataLoader(TensorDataset(x, y), batch_size=16), epochs=1, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="x has no samples"):
        model.fit(x[:0], y[:0], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="y is required"):
        model.fit(x, None, epochs=1, verbose=0)
    custom = mlp()
    custom.compile(loss=lambda out, target: (out * 0.0).sum())
    with pytest.raises(ValueError, match="class_weight needs a loss with a 'reduction' setting"):
        custom.fit(x, y, epochs=1, verbose=0, class_weight={0: 1.0})


def test_predict_and_evaluate(rng, capsys):
    x, y = blobs(rng, n=50)
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    logits = model.predict(x, batch_size=7)
    np.testing.assert_allclose(model.predict(ember.tensor(x)), logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict(DataLoader(TensorDataset(x, y), batch_size=16)), logits, rtol=1e-6,
                               atol=1e-6)
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(50), y])
    scores = model.evaluate(x, y, verbose=1)
    np.testing.assert_allclose(scores["loss"], loss, rtol=1e-5)
    assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y))
    assert capsys.readouterr().out.strip() == f"loss {scores['loss']:.4f} - accuracy {scores['accuracy']:.4f}"
    assert model.evaluate(x, y, return_dict=False) == pytest.approx([scores["loss"], scores["accuracy"]])
    with pytest.raises(ValueError, match="predict: batch_size must be an int >= 1"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="predict: x has no samples"):
        model.predict(x[:0])


# --------------------------------------------------------------------------- modules


def test_sequential_identity_and_module_details(rng):
    seq = nn.Sequential(collections.OrderedDict([("inp", nn.Linear(3, 4)), ("act", nn.Identity()),
                                                 ("out", nn.Linear(4, 2))]))
    assert [k for k, _ in seq.named_parameters()] == ["inp.weight", "inp.bias", "out.weight", "out.bias"]
    assert len(seq) == 3 and isinstance(seq[1], nn.Identity) and seq[-1] is seq.out
    t = ember.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    assert nn.Identity()(t) is t
    with pytest.raises(TypeError, match="Sequential: argument 1 is a str, not a Module"):
        nn.Sequential(nn.ReLU(), "relu")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 3)
            self.register_buffer("scale", ember.tensor(2.0))
            self.register_buffer("unused", None)
            self.register_parameter("gate", None)

    net = Net()
    assert [k for k, _ in net.named_parameters()] == ["body.weight", "body.bias"]
    assert [b.item() for b in net.buffers()] == [2.0] and list(net.state_dict()) == ["scale", "body.weight",
                                                                                      "body.bias"]  # PyTorch's order
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Linear"] and list(net.children()) == [net.body]
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Net"]  # children first, as PyTorch
    net.body(ember.tensor(rng.standard_normal((2, 3)).astype(np.float32))).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    assert repr(nn.Parameter(ember.zeros(2))).startswith("Parameter containing:\ntensor(")
    with pytest.raises(NotImplementedError, match="Net does not define forward"):
        net(t)
    with pytest.raises(TypeError, match="cannot assign str as buffer 'scale'"):
        net.scale = "two"
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'gate'"):
        net.gate = ember.zeros(2)
    net.gate = nn.Parameter(ember.ones(2))
    assert [k for k, _ in net.named_parameters()] == ["gate", "body.weight", "body.bias"]  # PyTorch's order

    class Forgetful(nn.Module):
        def __init__(self):
            self.w = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"must call super\(\).__init__\(\)"):
        Forgetful()


def test_register_buffer_and_register_parameter_check_their_values():
    # As PyTorch: a buffer is a Tensor or None, a parameter a Parameter or None; anything else
    # is refused when registered, not when state_dict or an optimizer meets it later.
    m = nn.Module()
    with pytest.raises(TypeError, match="buffer 'scale'"):
        m.register_buffer("scale", "two")
    with pytest.raises(TypeError, match="parameter 'g'"):
        m.register_parameter("g", ember.zeros(2))
    assert list(m.state_dict()) == [] and list(m.parameters()) == []


def test_layer_arguments_and_reprs():
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
    assert repr(conv).endswith("Conv2d(4, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=2, bias=False)")
    assert conv.weight.shape == (6, 2, 3, 3)
    with pytest.raises(ValueError, match=r"groups=3 must divide in_channels \(4\)"):
        nn.Conv2d(4, 6, 3, groups=3)
    # sizes are named at construction, not found wrong by a division or an index later
    for make, error, match in [
        (lambda: nn.Linear(-3, 4), ValueError, r"Linear: in_features must be >= 0, got -3"),
        (lambda: nn.Linear(3, 2.5), TypeError, r"Linear: out_features must be an int"),
        (lambda: nn.Conv2d(3, 4, 0), ValueError, r"Conv2d: kernel_size must be >= 1, got \(0, 0\)"),
        (lambda: nn.Conv2d(3, 4, (3,)), TypeError, r"Conv2d: kernel_size must be an int or a pair of ints"),
        (lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, r"Conv2d: groups must be >= 1, got 0"),
        (lambda: nn.Conv2d(3, 4, 3, stride=(1, 0)), ValueError, r"Conv2d: stride must be >= 1"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"Conv2d: padding must be >= 0"),
        (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, r"padding must be 'same', 'valid' or ints"),
        (lambda: nn.Conv2d(-1, 4, 3), ValueError, r"Conv2d: in_channels must be >= 0"),
    ]:
        with pytest.raises(error, match=match):
            make()
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        nn.Dropout(1.5)
    ln = nn.LayerNorm((3, 4))
    assert "(3, 4), eps=1e-05" in repr(ln)
    with pytest.raises(ValueError, match="does not end in it"):
        ln(ember.zeros(2, 4, 3))


def test_dropout_of_one_and_gradcheck_checks(rng):
    x = ember.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    y = nn.functional.dropout(x, 1.0)
    assert not y.detach().numpy().any()
    y.sum().backward()
    assert not x.grad.numpy().any()
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda t: t.sum(), [ember.tensor(rng.standard_normal(3))])
    with pytest.raises(ValueError, match="input 0 is float32; use float64"):
        gradcheck(lambda t: t.sum(), [x])


def test_bce_with_logits_weight(rng):
    a = rng.standard_normal((4, 3)) * 3
    t = (rng.random((4, 3)) > 0.5).astype(np.float64)
    w = rng.uniform(0.5, 2, (4, 3))
    x = ember.tensor(a, requires_grad=True)
    loss = nn.BCEWithLogitsLoss(weight=ember.tensor(w), reduction="sum")(x, ember.tensor(t))
    p = 1 / (1 + np.exp(-a))
    np.testing.assert_allclose(loss.item(), -np.sum(w * (t * np.log(p) + (1 - t) * np.log(1 - p))), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), w * (p - t), rtol=1e-10)


# --------------------------------------------------------------------------- quantization


def test_quantization_report_on_a_regression_model(rng):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = rng.standard_normal((64, 16)).astype(np.float32)
    y = rng.standard_normal((64, 4)).astype(np.float32)
    qmodel, report = quant.quantize(model, bits=8, eval_data=(x, y))
    with ember.no_grad():
        out, qout = model(ember.tensor(x)).numpy(), qmodel(ember.tensor(x)).numpy()
    assert report.metric == "mse" and report.layers == 2
    assert report.before == pytest.approx(np.mean((out - y) ** 2), rel=1e-5)
    assert report.after == pytest.approx(np.mean((qout - y) ** 2), rel=1e-5)
    assert f"mse: {report.before:.6g} -> {report.after:.6g}" in str(report)
    assert report.compression == pytest.approx(report.bytes_before / report.bytes_after) and report.compression > 1
    qw = quant.quantize_weight(rng.standard_normal((5, 40)).astype(np.float32), bits=4, group_size=32)
    assert repr(qw) == f"QuantizedWeight(bits=4, shape=(5, 40), group_size=32, nbytes={qw.nbytes})"
    with pytest.raises(TypeError, match="model must be an ember.nn.Module"):
        quant.quantize(lambda v: v)
    # (N,) targets of a one-output regression compare element by element, not as an N x N grid.
    single = nn.Sequential(nn.Linear(16, 1))
    with ember.no_grad():
        own = single(ember.tensor(x)).numpy()[:, 0]
    assert quant.quantize(single, eval_data=(x, own))[1].before == 0.0
    with pytest.raises(ValueError, match=r"eval_data's targets have shape \(3,\), the model's outputs \(64, 1\)"):
        quant.quantize(single, eval_data=(x, own[:3]))

    class Doubled(nn.Linear):  # a subclass computing more than the product: left in float
        def forward(self, v):
            return super().forward(v) * 2

    mixed = nn.Sequential(Doubled(16, 8), nn.ReLU(), nn.Linear(8, 2))
    qmixed, mixed_report = quant.quantize(mixed)
    assert type(qmixed[0]) is Doubled and isinstance(qmixed[2], quant.QuantLinear) and mixed_report.layers == 1
    assert any("left in float32: 0" in note for note in mixed_report.notes)
    with ember.no_grad():
        np.testing.assert_allclose(qmixed[0](ember.tensor(x)).numpy(), mixed[0](ember.tensor(x)).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"no nn.Linear layer to quantize \(0 subclass it"):
        quant.quantize(nn.Sequential(Doubled(4, 4)))
    with pytest.raises(ValueError, match=r"eval_data must be \(x, y\)"):
        quant.quantize(model, eval_data=x)
    with pytest.raises(TypeError, match="from_linear needs an nn.Linear, got ReLU"):
        quant.QuantLinear.from_linear(nn.ReLU())
    with pytest.raises(TypeError, match="QuantLinear: input must be a Tensor"):
        qmodel[0](x)
    with pytest.raises(TypeError, match="w must be floating point"):
        quant.quantize_weight(np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="is more than the 65536 inputs"):
        quant.quantize_weight(np.ones((1, 65537), np.float32))
