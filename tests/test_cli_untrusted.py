"""``ember evaluate`` / ``ember quantize`` on checkpoints whose config was edited: the config is
checked against the tensors the file holds before any model is built, and every failure is the
command's one-line message with exit code 2, never a traceback or gigabytes allocated."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
import safetensors.numpy as st

import ember
from ember import checkpoint, cli, models


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "digits.safetensors"
    assert cli.main(["train", "--epochs", "1", "--out", str(path), "--verbose", "0"]) == 0
    return path


def _edited(src, dst, **changes):
    arrays, meta = checkpoint.read(src)
    config = json.loads(meta["ember.config"])
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    meta["ember.config"] = json.dumps(config)
    st.save_file(arrays, str(dst), metadata=meta)
    return dst


EDITS = {
    "huge-mlp": dict(model="mlp", input_shape=[1, 100, 200], options={"hidden": [20000]}),
    "classes-str": dict(classes="10"),
    "classes-list": dict(classes=[10]),
    "classes-bool": dict(classes=True),
    "unknown-option": dict(options={"padding": 1, "dropout": 0.5}),
    "options-not-dict": dict(options=[1]),
    "input-shape-str": dict(input_shape="2499"),
    "input-shape-float": dict(input_shape=[1, 8, 9.5]),
    "wrong-hidden": dict(options={"padding": 1, "hidden": 64}),
    "unknown-key": dict(surprise=1),
    "bad-std": dict(std=[0.0]),
    "bad-quant": dict(quant={"bits": 3}),
    "unknown-model": dict(model="resnet"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("command", ["evaluate", "quantize"])
def test_edited_config_is_a_clean_error(digits_checkpoint, tmp_path, capsys, edit, command):
    path = _edited(digits_checkpoint, tmp_path / "edited.safetensors", **edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cli.main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ember {command}: ") and str(path) in err[0]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: no 4.7 GB model


def test_untouched_checkpoint_still_evaluates(digits_checkpoint, capsys):
    assert cli.main(["evaluate", str(digits_checkpoint)]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["2499", [1, 8, 9.5], [1, 8], (1, "8", 8), [1, 8, True]])
def test_builders_take_only_int_shapes(shape):
    with pytest.raises(ValueError, match="input_shape"):
        models.build("cnn", shape, 10)


@pytest.mark.parametrize("classes", ["10", 10.0, True, 1])
def test_builders_take_only_int_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        models.build("mlp", (1, 8, 8), classes)


def test_parameter_shapes_match_the_built_model():
    for name, options in (("cnn", {"padding": 1, "filters": 5, "hidden": 7}), ("mlp", {"hidden": [9, 4]})):
        model = models.build(name, (2, 9, 7), 3, **options)
        assert models.parameter_shapes(name, (2, 9, 7), 3, **options) == \
            {k: v.shape for k, v in model.state_dict().items()}
        q = ember.quant.quantized_structure(models.build(name, (2, 9, 7), 3, **options), bits=4)
        assert ember.quant.quantized_shapes(models.parameter_shapes(name, (2, 9, 7), 3, **options), 4, 32) == \
            {k: v.shape for k, v in q.state_dict().items()}
