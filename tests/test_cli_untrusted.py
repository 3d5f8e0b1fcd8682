"""``ember evaluate`` / ``ember quantize`` on checkpoints whose metadata was edited: the model is
rebuilt only from registered classes, allocating no more than the file backs, and every failure
is the command's one-line message with exit code 2, never a traceback or gigabytes allocated."""

from __future__ import annotations

import copy
import json
import resource

import pytest
from checkpoint_files import rewritten

import ember
from ember import checkpoint, cli, models


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "digits.safetensors"
    assert cli.main(["train", "--epochs", "1", "--out", str(path), "--verbose", "0"]) == 0
    return path


def _architecture_edit(change):
    def edit(meta):
        arch = json.loads(meta["ember.architecture"])
        meta["ember.architecture"] = change(arch) if callable(change) else change
        if not isinstance(meta["ember.architecture"], str):
            meta["ember.architecture"] = json.dumps(meta["ember.architecture"])
    return edit


def _config_edit(**changes):
    def edit(meta):
        config = json.loads(meta["ember.config"])
        config.update(changes)
        meta["ember.config"] = json.dumps(config)
    return edit


def _layer(index, **config):
    def change(arch):
        arch = copy.deepcopy(arch)
        arch["children"][str(index)]["config"].update(config)
        return arch
    return change


def _node(index, node):
    def change(arch):
        arch = copy.deepcopy(arch)
        arch["children"][str(index)] = node
        return arch
    return change


EDITS = {
    # The cnn on digits: 0 Conv2d, 1 ReLU, 2 MaxPool2d, 3 Flatten, 4 Linear(512, 128), 5 ReLU, 6 Linear(128, 10).
    "huge-linear": _architecture_edit(_layer(4, in_features=200_000, out_features=6000)),
    "huge-conv": _architecture_edit(_layer(0, out_channels=10**6, kernel_size=40)),
    "wrong-width": _architecture_edit(_layer(6, in_features=64)),
    "str-width": _architecture_edit(_layer(4, in_features="512")),
    "negative-width": _architecture_edit(_layer(4, in_features=-5)),
    "unknown-argument": _architecture_edit(_layer(4, dropout=0.5)),
    "unknown-class": _architecture_edit(_node(1, {"class": "os.system", "config": {}, "children": {}})),
    "class-not-str": _architecture_edit(_node(1, {"class": ["nn.ReLU"]})),
    "node-not-dict": _architecture_edit(_node(1, "nn.ReLU")),
    "extra-key": _architecture_edit(_node(1, {"class": "nn.ReLU", "code": "print()"})),
    "config-not-dict": _architecture_edit(_node(1, {"class": "nn.ReLU", "config": [1]})),
    "children-not-dict": _architecture_edit(lambda a: {**a, "children": [1, 2]}),
    "not-json": _architecture_edit("{model"),
    "not-an-object": _architecture_edit("[1, 2]"),
    "unavailable": _architecture_edit({"unavailable": "model.0 is a Foo, which is not registered"}),
    "no-architecture": lambda meta: meta.pop("ember.architecture"),
    "bad-std": _config_edit(std=[0.0]),
    "std-too-long": _config_edit(std=[1.0, 1.0]),
    "bad-mean": _config_edit(mean=["a"]),
    "bad-scale": _config_edit(scale="0.1"),
    "unknown-dataset": _config_edit(dataset="imagenet"),
    "config-not-object": lambda meta: meta.update({"ember.config": "[1]"}),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("command", ["evaluate", "quantize"])
def test_edited_checkpoint_is_a_clean_error(digits_checkpoint, tmp_path, capsys, edit, command):
    path = rewritten(digits_checkpoint, tmp_path / "edited.safetensors", edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cli.main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ember {command}: ") and str(path) in err[0], err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: no 4.8 GB model


def test_what_a_huge_edit_hits(digits_checkpoint, tmp_path, capsys):
    path = rewritten(digits_checkpoint, tmp_path / "huge.safetensors", EDITS["huge-linear"])
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.4: Linear" in err and "asks for more memory than it may use" in err


def test_untouched_checkpoint_still_evaluates(digits_checkpoint, capsys):
    assert cli.main(["evaluate", str(digits_checkpoint)]) == 0
    assert "test accuracy" in capsys.readouterr().out


# Checkpoints that `ember train` wrote before checkpoints recorded their architecture: the model
# is built from the config's name and sizes, under the same allocation limit.
def _legacy(**config_changes):
    def edit(meta):
        meta.pop("ember.architecture")
        config = json.loads(meta["ember.config"])
        config.update({"input_shape": [1, 8, 8], "classes": 10, "options": {"padding": 1}})
        config.update(config_changes)
        meta["ember.config"] = json.dumps(config)
    return edit


LEGACY_EDITS = {
    "huge-mlp": dict(model="mlp", input_shape=[1, 100, 200], options={"hidden": [20000]}),
    "classes-str": dict(classes="10"),
    "classes-bool": dict(classes=True),
    "unknown-option": dict(options={"padding": 1, "dropout": 0.5}),
    "options-not-dict": dict(options=[1]),
    "input-shape-float": dict(input_shape=[1, 8, 9.5]),
    "wrong-hidden": dict(options={"padding": 1, "hidden": 64}),
    "bad-quant": dict(quant={"bits": 3}),
    "unknown-model": dict(model="resnet"),
}


@pytest.mark.parametrize("changes", LEGACY_EDITS.values(), ids=LEGACY_EDITS.keys())
def test_edited_legacy_checkpoint_is_a_clean_error(digits_checkpoint, tmp_path, capsys, changes):
    path = rewritten(digits_checkpoint, tmp_path / "legacy.safetensors", _legacy(**changes))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ember evaluate: ") and str(path) in err[0], err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_legacy_checkpoint_evaluates_and_quantizes(digits_checkpoint, tmp_path, capsys):
    path = rewritten(digits_checkpoint, tmp_path / "legacy.safetensors", _legacy())
    assert cli.main(["evaluate", str(path)]) == 0
    accuracy = capsys.readouterr().out.splitlines()[-1]
    assert cli.main(["evaluate", str(digits_checkpoint)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == accuracy
    assert cli.main(["quantize", str(path), "--out", str(tmp_path / "q.safetensors")]) == 0
    assert cli.main(["evaluate", str(tmp_path / "q.safetensors")]) == 0
    assert "(int8)" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["2499", [1, 8, 9.5], [1, 8], (1, "8", 8), [1, 8, True]])
def test_builders_take_only_int_shapes(shape):
    with pytest.raises(ValueError, match="input_shape"):
        models.build("cnn", shape, 10)


@pytest.mark.parametrize("classes", ["10", 10.0, True, 1])
def test_builders_take_only_int_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        models.build("mlp", (1, 8, 8), classes)


def test_rebuild_limit_is_what_the_file_backs(digits_checkpoint):
    shapes, _, nbytes = checkpoint.read_header(digits_checkpoint)
    model = ember.load_model(digits_checkpoint)
    assert nbytes == sum(t.numel() * t.dtype.itemsize for t in model.state_dict().values())
    assert {f"model.{k}": tuple(t.shape) for k, t in model.state_dict().items()} == \
        {k: v for k, v in shapes.items() if k.startswith("model.")}
    assert checkpoint.rebuild_limit(nbytes) == 8 * nbytes + 64 * 2**20
