"""Checkpoints record what rebuilds the model: ``nn.describe`` / ``nn.rebuild``,
``ember.load_model``, ``@nn.register`` for a model's own classes, and ``ember evaluate`` /
``ember quantize`` on every kind of Ember checkpoint."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict

import numpy as np
import pytest

import ember
import ember.keras as keras
from ember import checkpoint, cli, nn, quant
from ember.callbacks import ModelCheckpoint
from ember.factories import allocation_limit

rng = np.random.default_rng(0)


@nn.register(name="tests.ArchBlock")
class ArchBlock(nn.Module):
    """A model's own module: arguments by keyword, a default, a tuple, sub-modules it makes."""

    def __init__(self, features, hidden=(16, 8), activation="relu", *, classes=3):
        super().__init__()
        self.activation = activation
        layers, width = [], features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU() if activation == "relu" else nn.Tanh()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


@nn.register(name="tests.ArchScaled")
class ArchScaled(nn.Module):
    """Constructor arguments a file cannot hold, and the get_config that stands in for them."""

    def __init__(self, inner: nn.Module = None, factor: float = 2.0, width: int = 4):
        super().__init__()
        self.inner = inner if inner is not None else nn.Linear(width, width)
        self.factor, self.width = factor, width

    def get_config(self):
        return {"factor": self.factor, "width": self.width}

    def forward(self, x):
        return self.inner(x) * self.factor


@nn.register(name="tests.ArchVarargs")
class ArchVarargs(nn.Module):
    def __init__(self, first, *widths, **options):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, **options) for a, b in zip((first, *widths), widths))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Unregistered(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _round_trip(model, x, tmp_path):
    """Save, load_model, and check the rebuilt model: same class tree, same outputs."""
    model.eval()
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = ember.load_model(path)
    assert type(again) is type(model) and not again.training
    assert nn.describe(again) == nn.describe(model)
    assert repr(again) == repr(model)
    with ember.no_grad():
        np.testing.assert_array_equal(again(ember.tensor(x)).numpy(), model(ember.tensor(x)).numpy())
    return again


LAYERS = {
    "linear": (lambda: nn.Linear(5, 3, bias=False), (2, 5)),
    "conv": (lambda: nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=1, groups=2), (2, 4, 9, 8)),
    "conv-same": (lambda: nn.Conv2d(2, 3, 3, padding="same"), (1, 2, 6, 6)),
    "maxpool": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 7, 7)),
    "avgpool": (lambda: nn.AvgPool2d(2, count_include_pad=False), (2, 3, 6, 6)),
    "adaptive": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 6, 6)),
    "flatten": (lambda: nn.Flatten(2), (2, 3, 4, 5)),
    "dropout": (lambda: nn.Dropout(0.3), (4, 6)),
    "bn1d": (lambda: nn.BatchNorm1d(6, momentum=None), (4, 6)),
    "bn2d": (lambda: nn.BatchNorm2d(3, eps=1e-3, affine=False), (2, 3, 4, 4)),
    "layernorm": (lambda: nn.LayerNorm([4, 5]), (2, 3, 4, 5)),
    "leaky": (lambda: nn.LeakyReLU(0.2), (3, 4)),
    "softmax": (lambda: nn.Softmax(dim=0), (3, 4)),
    "activations": (lambda: nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.SiLU(), nn.Identity()),
                    (3, 4)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_rebuilds_from_its_checkpoint(name, tmp_path):
    make, shape = LAYERS[name]
    model = make()
    for p in model.parameters():  # weights that differ from a fresh layer's
        nn.init.normal_(p)
    if isinstance(model, (nn.BatchNorm1d, nn.BatchNorm2d)):  # running statistics that are not the defaults
        model.train()(ember.tensor(rng.standard_normal(shape).astype(np.float32)))
    _round_trip(model, rng.standard_normal(shape).astype(np.float32), tmp_path)


def test_embedding_rebuilds(tmp_path):
    model = nn.Embedding(11, 4)
    model.save(tmp_path / "e.safetensors")
    again = ember.load_model(tmp_path / "e.safetensors")
    np.testing.assert_array_equal(again.weight.detach().numpy(), model.weight.detach().numpy())


def test_nested_containers_keep_their_names(tmp_path):
    model = nn.Sequential(OrderedDict(features=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), pool=nn.MaxPool2d(2),
                                      flat=nn.Flatten(), head=nn.ModuleList([nn.Linear(36, 5)])))
    path = tmp_path / "n.safetensors"
    model.save(path)
    again = ember.load_model(path)
    assert list(again.state_dict()) == list(model.state_dict()) == [
        "features.0.weight", "features.0.bias", "head.0.weight", "head.0.bias"]
    assert nn.describe(again) == nn.describe(model)


def test_a_registered_module_rebuilds_with_its_arguments(tmp_path):
    model = ArchBlock(12, hidden=[7], activation="tanh", classes=4)
    assert model.get_config() == {"features": 12, "hidden": [7], "activation": "tanh", "classes": 4}
    again = _round_trip(model, rng.standard_normal((3, 12)).astype(np.float32), tmp_path)
    assert isinstance(again.body[1], nn.Tanh)
    description = nn.describe(ArchBlock(5))  # defaults recorded too: a later default does not change the file
    assert description["class"] == "tests.ArchBlock"
    assert description["config"] == {"features": 5, "hidden": [16, 8], "activation": "relu", "classes": 3}


def test_get_config_stands_in_for_what_json_cannot_hold(tmp_path):
    model = ArchScaled(nn.Linear(3, 3), factor=0.5, width=3)
    assert isinstance(nn.Module.get_config(model)["inner"], nn.Module)  # what it was made with
    _round_trip(model, rng.standard_normal((2, 3)).astype(np.float32), tmp_path)


def test_varargs_and_keyword_arguments_rebuild(tmp_path):
    model = ArchVarargs(6, 5, 4, bias=False)
    assert model.get_config() == {"first": 6, "widths": (5, 4), "options": {"bias": False}}
    again = _round_trip(model, rng.standard_normal((2, 6)).astype(np.float32), tmp_path)
    assert again.layers[1].bias is None


def test_quantized_models_rebuild_quantized(tmp_path):
    x = rng.standard_normal((5, 12)).astype(np.float32)
    for bits in (8, 4):
        for model in (nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)), ArchBlock(12)):
            linears = sum(isinstance(m, nn.Linear) for m in model.modules())
            qmodel, _ = quant.quantize(model, bits=bits, group_size=8)
            again = _round_trip(qmodel, x, tmp_path)
            assert sum(isinstance(m, quant.QuantLinear) for m in again.modules()) == linears
            assert not any(isinstance(m, nn.Linear) for m in again.modules())


def test_a_module_applied_twice_comes_back_as_one_module(tmp_path):
    x = rng.standard_normal((3, 12)).astype(np.float32)
    twice = nn.Linear(12, 12)
    model = nn.Sequential(twice, nn.ReLU(), nn.Sequential(twice, nn.Tanh()), nn.Linear(12, 3))
    description = nn.describe(model)
    assert description["children"]["2"]["children"]["0"] == {"same_as": "0"}
    again = _round_trip(model, x, tmp_path)
    assert again[0] is again[2][0] and list(again.state_dict()) == list(model.state_dict())
    qmodel, _ = quant.quantize(model, bits=8)  # its quantized form: one QuantLinear, also kept shared
    qagain = _round_trip(qmodel, x, tmp_path)
    assert isinstance(qagain[0], quant.QuantLinear) and qagain[0] is qagain[2][0]
    block = ArchBlock(12, hidden=(12, 12))  # a registered module whose constructor made two layers...
    setattr(block.body, "2", block.body[0])  # ...one of which is then replaced by the other
    again = _round_trip(block, x, tmp_path)
    assert again.body[2] is again.body[0]


def test_a_same_as_must_name_a_module_described_before_it():
    good = nn.describe(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)))
    for bad_node in ({"same_as": "2"}, {"same_as": "9"}, {"same_as": 0}, {"same_as": "0", "class": "nn.ReLU"}):
        bad = json.loads(json.dumps(good))  # "2": a module described after it
        bad["children"]["1"] = bad_node
        with pytest.raises(ValueError, match=r"model\.1: \{'same_as': path\} must name a module described before it"):
            nn.rebuild(bad)
    with pytest.raises(ValueError, match=r"model: \{'same_as': path\} must name"):
        nn.rebuild({"same_as": ""})


def test_keras_models_rebuild(tmp_path):
    model = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
                              keras.layers.BatchNormalization(),
                              keras.layers.MaxPooling2D(padding="same"),
                              keras.layers.Flatten(),
                              keras.layers.Dropout(0.2),
                              keras.layers.Dense(10, activation="softmax")])
    x = rng.random((3, 8, 8, 1), dtype=np.float32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([1, 2, 3]), epochs=1, verbose=0)  # running statistics that are not the defaults
    model.save(tmp_path / "k.safetensors")
    again = keras.models.load_model(tmp_path / "k.safetensors")  # as Keras users write it
    assert isinstance(again, keras.Sequential) and again.built and again.data_format == "channels_last"
    np.testing.assert_array_equal(again.predict(x), model.eval().predict(x))
    assert [layer.built for layer in again.layers] == [True] * 6


def test_every_way_of_saving_records_the_architecture(tmp_path):
    (x, y), _ = ember.datasets.digits()
    x = x.astype(np.float32) / 16
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "cb.safetensors")])
    model.save(tmp_path / "save.safetensors")
    ember.save(tmp_path / "ember.safetensors", model, ember.optim.Adam(model.parameters()), epoch=2)
    for name in ("cb", "save", "ember"):
        again = ember.load_model(tmp_path / f"{name}.safetensors")
        assert nn.describe(again) == nn.describe(model), name


def test_an_unregistered_class_saves_and_says_why_it_cannot_be_rebuilt(tmp_path):
    model = nn.Sequential(nn.Flatten(), Unregistered())
    with pytest.raises(TypeError, match=r"model\.1 is a .*Unregistered, which is not registered.*ember\.nn\.register"):
        nn.describe(model)
    path = model.save(tmp_path / "u.safetensors")  # the weights are saved all the same
    assert "not registered" in json.loads(checkpoint.read_header(path)[1]["ember.architecture"])["unavailable"]
    with pytest.raises(ValueError, match=r"u\.safetensors does not record its model's architecture: model\.1"):
        ember.load_model(path)
    ember.load(path, nn.Sequential(nn.Flatten(), Unregistered()))  # loading into a model made in code works


def test_arguments_json_cannot_hold_are_named():
    dense = keras.layers.Dense(3, activation=lambda t: t)
    with pytest.raises(TypeError, match=r"model's argument\.activation is a function.*get_config"):
        nn.describe(dense)


def test_register_rules():
    with pytest.raises(TypeError, match="not a subclass"):
        nn.register(int)
    with pytest.raises(ValueError, match="taken by"):
        nn.register(Unregistered, name="tests.ArchBlock")
    assert nn.register(ArchBlock, name="tests.ArchBlock") is ArchBlock  # the same class again: fine


def test_rebuild_errors_name_the_module():
    good = nn.describe(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    bad = json.loads(json.dumps(good))
    bad["children"]["0"]["config"]["out_features"] = -1
    with pytest.raises(ValueError, match=r"model\.0: Linear\(in_features=3, out_features=-1, bias=true\) cannot be "):
        nn.rebuild(bad)
    bad["children"]["0"] = {"class": "Unregistered"}
    with pytest.raises(ValueError, match="model.0 is a 'Unregistered', which is not a registered module class"):
        nn.rebuild(bad)
    with pytest.raises(ValueError, match="asks for more memory"):
        nn.rebuild(good, max_bytes=16)
    assert isinstance(nn.rebuild(good, max_bytes=200), nn.Sequential)  # 4x3 + 4 floats: 64 bytes


def test_allocation_limit_counts_every_factory():
    with allocation_limit(1000, "this block") as used:
        ember.zeros(10)
        ember.ones(2, 5)
        ember.full((10,), 3.0)
        ember.randn(10)  # drawn in float64: 80 bytes
        assert used[0] == 40 + 40 + 40 + 80
        with pytest.raises(ValueError, match="this block asks for more memory than it may use: a tensor of shape "
                                             r"\(1000,\)"):
            ember.empty(1000)
    ember.empty(1000)  # no limit outside the block


@pytest.fixture
def digits_model_files(tmp_path, monkeypatch):
    """A digits CNN saved by model.save (no config) and a Keras-style one (channels last)."""
    monkeypatch.chdir(tmp_path)
    (x, y), _ = ember.datasets.digits()
    x = x.astype(np.float32) / 16
    model = ember.models.cnn((1, 8, 8), 10, padding=1)
    model.compile(optimizer="adam", loss="cross_entropy")
    model.fit(x, y, epochs=3, verbose=0, seed=0)
    model.save("plain.safetensors")
    kmodel = keras.Sequential([keras.layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
                               keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    kmodel.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    kmodel.fit(x.transpose(0, 2, 3, 1), y, epochs=3, verbose=0)
    kmodel.save("keras.safetensors")
    return tmp_path


def _accuracy(out):
    return float(out.split("test accuracy ")[1].split()[0])


def test_cli_evaluates_and_quantizes_any_checkpoint(digits_model_files, capsys):
    for name in ("plain", "keras"):
        assert cli.main(["evaluate", f"{name}.safetensors"]) == 0
        captured = capsys.readouterr()
        assert _accuracy(captured.out) > 0.8, captured.out
        # the scaling is not recorded: the digits' usual one is used, and the note says so
        assert "does not record how its inputs were scaled; used pixels x 0.0625" in captured.err
        assert cli.main(["quantize", f"{name}.safetensors", "--bits", "4", "--group-size", "8"]) == 0
        capsys.readouterr()
        assert cli.main(["evaluate", f"{name}.int4.safetensors"]) == 0
        captured = capsys.readouterr()
        assert "(int4)" in captured.out and _accuracy(captured.out) > 0.75
        assert captured.err == ""  # the quantized file records the scaling it was made with


def test_cli_scaling_flags(digits_model_files, capsys):
    assert cli.main(["evaluate", "plain.safetensors", "--scale", "0.0625"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and _accuracy(captured.out) > 0.8
    assert cli.main(["evaluate", "plain.safetensors", "--mean", "100", "--std", "2"]) == 0
    captured = capsys.readouterr()  # inputs far from what the model learnt on; the default scale still noted
    assert _accuracy(captured.out) < 0.5 and "used pixels x 0.0625" in captured.err
    assert cli.main(["evaluate", "plain.safetensors", "--mean", "1,2,3"]) == 2
    assert "--mean: give 1 finite number, got 3" in capsys.readouterr().err
    assert cli.main(["evaluate", "plain.safetensors", "--std", "0"]) == 2
    assert "--std: every value must be > 0" in capsys.readouterr().err


def test_cli_imports_a_models_module(digits_model_files, capsys, monkeypatch):
    (digits_model_files / "arch_cli_models.py").write_text(
        "from ember import nn\n\n\n"
        "@nn.register(name='tests.CliNet')\n"
        "class CliNet(nn.Module):\n"
        "    def __init__(self, width=32):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n")
    monkeypatch.syspath_prepend(str(digits_model_files))
    import arch_cli_models

    arch_cli_models.CliNet(width=8).save("custom.safetensors", config={"dataset": "digits", "scale": 1 / 16})
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(digits_model_files)])
    monkeypatch.delitem(nn.architecture._REGISTRY, "tests.CliNet")  # as in a fresh process
    assert cli.main(["evaluate", "custom.safetensors"]) == 2
    assert "'tests.CliNet', which is not a registered module class" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "arch_cli_models")
    assert cli.main(["evaluate", "custom.safetensors", "--import", "arch_cli_models"]) == 0  # from the folder
    assert "CliNet(Sequential) on the digits test split" in capsys.readouterr().out
    assert cli.main(["evaluate", "custom.safetensors", "--import", "no_such_module_here"]) == 2
    assert "--import no_such_module_here: No module named" in capsys.readouterr().err
