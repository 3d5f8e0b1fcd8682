"""``ember.profile`` and ``ember profile``: the per-layer breakdown, the variants side by side,
the records against their documented schema, the plot, and bad input."""

from __future__ import annotations

import importlib.resources
import json
import types

import jsonschema
import numpy as np
import pytest

import ember
from ember import cli, models, nn, quant
from ember.autograd import engine
from ember.bench import cli as bench_cli
from ember.bench import plot, profiling


def schema():
    data = json.loads(importlib.resources.files("ember.bench").joinpath("profile.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return data


@pytest.fixture(scope="module")
def small():
    ember.manual_seed(0)
    model = models.cnn((3, 8, 8), 5, filters=4, hidden=16, padding=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    report = ember.profile(model, x, batch_sizes=(1, 4), eval_data=(x, y), repeats=5, layer_steps=2, progress=False,
                           rounds=1, settle=0.0, min_time=0.0)
    return model, x, y, report


def test_each_variant_is_profiled_layer_by_layer(small):
    model, x, y, report = small
    data = report.to_dict()
    jsonschema.validate(json.loads(json.dumps(data)), schema())
    assert list(data["variants"]) == ["fp32", "bf16", "int8", "int4"] and data["layer_batch"] == 16
    names = [layer["name"] for layer in data["variants"]["fp32"]["layers"]]
    assert names == [name for name, m in model.named_modules() if name and not list(m.children())]
    for name, v in data["variants"].items():
        trained = name in ("fp32", "bf16")
        assert v["trained"] is trained
        assert all((layer["backward_s"] is not None) is trained for layer in v["layers"])
        assert all(layer["forward_s"] > 0 for layer in v["layers"])
        assert 0.3 < sum(layer["share"] for layer in v["layers"]) <= 1.0 + 1e-9
        assert v["latency_s"]["p50"] <= v["latency_s"]["p90"] <= v["latency_s"]["p99"] and v["latency_s"]["calls"] == 5
        assert [t["batch"] for t in v["throughput"]] == [1, 4] and all(t["samples_per_s"] > 0 for t in v["throughput"])
    assert data["variants"]["int8"]["model_bytes"] < data["variants"]["fp32"]["model_bytes"]
    assert data["variants"]["int4"]["model_bytes"] < data["variants"]["int8"]["model_bytes"]
    with ember.no_grad():
        want = float((model(ember.tensor(x)).numpy().argmax(1) == y).mean())
    assert data["variants"]["fp32"]["accuracy"] == want
    assert abs(data["variants"]["bf16"]["accuracy"] - want) <= 1 / 16  # bf16 products may flip a close call
    assert model.training  # the model is left as it was


def test_flops_and_bytes_of_the_matrix_layers_are_exact(small):
    model, x, _, report = small
    layers = {layer["name"]: layer for layer in report.variants["fp32"]["layers"]}
    conv, linear = model[0], model[4]
    assert layers["0"]["flops_forward"] == 2.0 * 16 * 4 * 8 * 8 * 3 * 3 * 3
    assert layers["0"]["flops_backward"] == 2 * layers["0"]["flops_forward"]
    assert layers["4"]["flops_forward"] == 2.0 * 16 * 16 * linear.in_features
    assert layers["0"]["param_bytes"] == conv.weight.numel() * 4 + conv.bias.numel() * 4
    assert layers["0"]["activation_bytes"] == 16 * 4 * 8 * 8 * 4
    assert layers["3"]["flops_forward"] == 0  # Flatten moves no numbers
    q = {layer["name"]: layer for layer in report.variants["int8"]["layers"]}
    assert q["4"]["kind"] == "QuantLinear" and q["4"]["flops_forward"] == layers["4"]["flops_forward"]
    assert q["4"]["param_bytes"] < layers["4"]["param_bytes"]


def test_the_model_is_left_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 2)).eval()
    x = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype(np.float32)
    grad = np.ones((2, 18), np.float32)
    model[3].weight.grad = ember.tensor(grad)
    before = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    ember.profile(model, x, variants=("fp32", "int8"), batch_sizes=(1,), repeats=2, layer_steps=2, progress=False,
                  rounds=1, settle=0.0, min_time=0.0)
    assert not model.training and np.array_equal(model[3].weight.grad.numpy(), grad)
    assert model[0].weight.grad is None
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.detach().numpy(), before[k], err_msg=k)  # running statistics included


def test_the_backward_is_charged_to_the_layers_that_made_it():
    lin = nn.Linear(256, 256)
    cheap = nn.ReLU()
    model = nn.Sequential(lin, cheap)
    x = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    report = ember.profile(model, x, variants=("fp32",), batch_sizes=(1,), repeats=2, layer_steps=3, progress=False,
                           rounds=1, settle=0.0, min_time=0.0)
    layers = {layer["kind"]: layer for layer in report.variants["fp32"]["layers"]}
    assert layers["Linear"]["backward_s"] > layers["ReLU"]["backward_s"] > 0


def test_a_quantized_model_is_profiled_as_it_is():
    model, _ = quant.quantize(models.build("mlp", (1, 4, 4), 3), bits=8)
    x = np.zeros((4, 1, 4, 4), np.float32)
    report = ember.profile(model, x, batch_sizes=(2,), repeats=2, layer_steps=1, progress=False, rounds=1,
                           settle=0.0, min_time=0.0)
    assert list(report.variants) == ["fp32"] and not report.variants["fp32"]["trained"]
    assert set(report.skipped) == {"bf16", "int8", "int4"}
    assert "already quantized" in report.skipped["int8"]


def test_a_model_without_linear_layers_skips_the_quantized_forms():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    report = ember.profile(model, np.zeros((2, 1, 5, 5), np.float32), variants=("fp32", "int8"), batch_sizes=(1,),
                           repeats=2, layer_steps=1, progress=False, rounds=1, settle=0.0, min_time=0.0)
    assert list(report.variants) == ["fp32"] and "no nn.Linear layer" in report.skipped["int8"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(example_input=np.zeros((0, 3))), "example_input must be a batch"),
    (dict(variants=("fp16",)), "variants must be among fp32, bf16, int8, int4"),
    (dict(batch_sizes=(0, 2)), "batch_sizes must be positive integers"),
    (dict(repeats=0), "repeats and layer_steps must be >= 1"),
    (dict(eval_data=(np.zeros((3, 3)), np.zeros(2, int))), "eval_data must be"),
    (dict(eval_data=(np.zeros((2, 3)), np.zeros(2))), "labels must be integers"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    args = dict(example_input=np.zeros((2, 3), np.float32))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ember.profile(nn.Linear(3, 2), progress=False, **args)
    with pytest.raises(TypeError, match="model must be an ember.nn.Module"):
        ember.profile(lambda x: x, np.zeros((2, 3)))


def test_only_one_backward_timer_at_a_time():
    with engine.timed_backward(lambda node, s: None):
        with pytest.raises(RuntimeError, match="another profiler"):
            with engine.timed_backward(lambda node, s: None):
                pass
    assert engine._backward_timer is None


def test_profile_command_on_a_digits_checkpoint(tmp_path, capsys):
    ckpt, out_json, png = tmp_path / "d.safetensors", tmp_path / "p.json", tmp_path / "p.png"
    assert cli.main(["train", "--epochs", "1", "--out", str(ckpt), "--verbose", "0"]) == 0
    capsys.readouterr()
    code = cli.main(["profile", str(ckpt), "--batch-sizes", "1,16", "--repeats", "5", "--json", str(out_json),
                     "--plot", str(png), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{ckpt} on digits:" in out and "samples/s @16" in out and "QuantLinear" in out
    data = json.loads(out_json.read_text())
    jsonschema.validate(data, schema())
    assert data["input_shape"] == [1, 8, 8] and all(v["accuracy"] > 0.5 for v in data["variants"].values())
    image = plot.pyplot().imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 400


def test_profile_command_on_a_model_name_and_its_errors(capsys, tmp_path):
    code = cli.main(["profile", "mlp", "--input-shape", "1,4,4", "--classes", "3", "--batch-size", "4",
                     "--batch-sizes", "1", "--variants", "fp32,int4", "--repeats", "2", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "mlp (fresh weights) on random inputs" in out
    assert cli.main(["profile", str(tmp_path / "none.safetensors")]) == 2
    assert "is not a model name: cnn, mlp" in capsys.readouterr().err
    assert cli.main(["profile", "cnn", "--input-shape", "3,32"]) == 2
    assert "--input-shape must be C,H,W" in capsys.readouterr().err
    assert cli.main(["profile", "cnn", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err


def test_profile_outputs_never_overwrite_the_checkpoint(tmp_path, capsys, monkeypatch):
    def worked(args):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(bench_cli, "_model_and_data", worked)
    ckpt = tmp_path / "m.safetensors"
    models.cnn((1, 8, 8), 10, filters=4, hidden=8).save(ckpt, config={"dataset": "digits", "model": "cnn"})
    before = ckpt.read_bytes()
    for argv, message in [(["--json", str(ckpt)], f"--json {ckpt} is the input {ckpt}"),
                          (["--plot", str(ckpt)], f"--plot {ckpt} is the input"),
                          (["--plot", str(tmp_path / "p")], "the file name must end in the image format"),
                          (["--json", str(tmp_path)], "is a folder")]:
        assert cli.main(["profile", str(ckpt), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, argv
    assert ckpt.read_bytes() == before and sorted(tmp_path.iterdir()) == [ckpt]


def test_profile_of_a_model_name_on_a_data_set_takes_its_scaling(capsys, monkeypatch):
    seen = {}

    def profiled(model, x, **kwargs):
        seen["x"] = x
        return types.SimpleNamespace(table=lambda: "")

    monkeypatch.setattr(profiling, "profile", profiled)
    argv = ["profile", "mlp", "--dataset", "digits", "--batch-size", "4", "--no-eval", "--quiet"]
    assert cli.main(argv) == 0
    assert seen["x"].shape == (4, 1, 8, 8) and seen["x"].max() == 1.0  # digits' pixels 0..16, times 1/16
    assert cli.main(argv + ["--scale", "0.5", "--mean", "2", "--std", "4"]) == 0
    assert seen["x"].max() == (8.0 - 2) / 4
    for extra, message in [(["--mean", "1,2"], "--mean: give 1 finite number, got 2"),
                           (["--std", "0"], "--std: every value must be > 0")]:
        assert cli.main(argv + extra) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["profile", "mlp", "--scale", "2", "--quiet"]) == 2  # random inputs: nothing to scale
    assert "--scale: only with --dataset" in capsys.readouterr().err
