"""ONNX export, verified by running: every layer alone and every model of the zoo, exported and run
in ONNX Runtime at batch 1 and at another batch, against Ember's own outputs; quantized models;
the graph's names and checks; the errors; ``ember export``."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import ember
from ember import cli, models, nn, quant

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'ember[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the exported graphs are checked in onnxruntime")
import ember.onnx as ember_onnx  # noqa: E402


def run_both(model, x, tmp_path, batches=(1, 5), tol=1e-5, **kwargs):
    """Export ``model`` with ``x`` as the example, run it in ONNX Runtime at each batch size and
    compare with Ember (relative to the largest output); returns the ONNX model."""
    model.eval()
    path = ember_onnx.export(model, x[:2], tmp_path / "m.onnx", **kwargs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in batches:
        batch = np.ascontiguousarray(np.resize(x, (b,) + x.shape[1:]))
        got = session.run(None, {"input": batch})[0]
        with ember.no_grad():
            want = model(ember.tensor(batch)).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(np.abs(want).max(), 1e-30), err_msg=f"batch {b}")
    return onnx.load(str(path))


def with_statistics(model, x):
    """Running statistics that are not the defaults (so a wrong export of them shows)."""
    model.train()
    with ember.no_grad():
        for _ in range(3):
            model(ember.tensor(x))
    return model.eval()


IMAGE = (3, 9, 9)
LAYERS = [
    ("conv", lambda: nn.Conv2d(3, 4, 3), IMAGE),
    ("conv padded strided", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), IMAGE),
    ("conv same dilated", lambda: nn.Conv2d(3, 4, 3, padding="same", dilation=2), IMAGE),
    ("conv valid no bias", lambda: nn.Conv2d(3, 6, (2, 3), padding="valid", bias=False), IMAGE),
    ("conv grouped", lambda: nn.Conv2d(4, 8, 3, groups=2, padding=(1, 2)), (4, 7, 6)),
    ("conv depthwise", lambda: nn.Conv2d(4, 4, 3, groups=4), (4, 7, 7)),
    ("max pool", lambda: nn.MaxPool2d(2), IMAGE),
    ("max pool padded ceil", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), IMAGE),
    ("max pool dilated", lambda: nn.MaxPool2d(2, stride=1, dilation=2), IMAGE),
    ("avg pool", lambda: nn.AvgPool2d(3, stride=2, padding=1), IMAGE),
    ("avg pool no pad count", lambda: nn.AvgPool2d(2, padding=1, count_include_pad=False), IMAGE),
    ("adaptive avg pool 1", lambda: nn.AdaptiveAvgPool2d(1), IMAGE),
    ("adaptive avg pool 3", lambda: nn.AdaptiveAvgPool2d((3, 3)), IMAGE),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), IMAGE),
    ("batchnorm2d no affine", lambda: nn.BatchNorm2d(3, affine=False), IMAGE),
    ("batchnorm1d", lambda: nn.BatchNorm1d(6), (6,)),
    ("layernorm", lambda: nn.LayerNorm(6), (6,)),
    ("layernorm 2d", lambda: nn.LayerNorm((9, 9), elementwise_affine=False), IMAGE),
    ("linear", lambda: nn.Linear(6, 4), (6,)),
    ("linear no bias", lambda: nn.Linear(6, 4, bias=False), (6,)),
    ("linear on 3-d", lambda: nn.Linear(9, 4), (3, 9)),
    ("relu", nn.ReLU, IMAGE),
    ("leaky relu", lambda: nn.LeakyReLU(0.3), IMAGE),
    ("sigmoid", nn.Sigmoid, IMAGE),
    ("tanh", nn.Tanh, IMAGE),
    ("gelu", nn.GELU, IMAGE),
    ("silu", nn.SiLU, IMAGE),
    ("softmax", lambda: nn.Softmax(1), IMAGE),
    ("softmax last", lambda: nn.Softmax(-1), (6,)),
    ("softmax implicit dim", nn.Softmax, IMAGE),  # PyTorch's legacy dim: 1 for 4-D input
    ("softmax implicit dim 2-d", nn.Softmax, (6,)),
    ("flatten", nn.Flatten, IMAGE),
    ("flatten middle", lambda: nn.Flatten(1, 2), IMAGE),
    ("dropout", lambda: nn.Dropout(0.5), (6,)),
    ("identity", nn.Identity, (6,)),
]


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")  # the implicit-dim case
@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_every_layer_alone_runs_the_same_in_onnx_runtime(name, make, shape, tmp_path, rng):
    x = rng.standard_normal((5,) + shape).astype(np.float32)
    model = with_statistics(nn.Sequential(make()), x)
    run_both(model, x, tmp_path)


@pytest.mark.parametrize("make", [
    lambda: nn.MaxPool2d(3, 3, 1, ceil_mode=True),
    lambda: nn.MaxPool2d(2, 3, ceil_mode=True),
    lambda: nn.MaxPool2d(4, 5, 2, dilation=2, ceil_mode=True),  # end padding as large as the kernel
    lambda: nn.MaxPool2d((3, 2), (2, 3), (1, 0), ceil_mode=True),
    lambda: nn.AvgPool2d(3, 3, 1, ceil_mode=True),
    lambda: nn.AvgPool2d(4, 3, ceil_mode=True),
    lambda: nn.AvgPool2d(4, 3, 2, ceil_mode=True, count_include_pad=False),
    lambda: nn.AvgPool2d((2, 4), (3, 2), (1, 2), ceil_mode=True),
], ids=["max k3 s3 p1", "max k2 s3", "max dilated", "max rectangular", "avg k3 s3 p1", "avg k4 s3",
        "avg no pad count", "avg rectangular"])
def test_pooling_with_ceil_mode_keeps_embers_output_size_and_divisor(make, tmp_path, rng):
    # Ember (as PyTorch) drops a last window that would start in the right padding; ONNX's ceil rule
    # keeps it (MaxPool2d(3, 3, 1, ceil_mode=True) on 8 pixels: 3 outputs, ONNX's ceil rule 4).
    for size in range(5, 14):
        x = rng.standard_normal((2, 2, size, size + 1)).astype(np.float32)
        run_both(nn.Sequential(make()), x, tmp_path, batches=(2,))


@pytest.mark.parametrize("opset", [17, 21])
def test_gelu_at_an_opset_without_the_gelu_operator(opset, tmp_path, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32) * 3
    graph = run_both(nn.Sequential(nn.GELU()), x, tmp_path, opset=opset)
    assert ("Gelu" in [n.op_type for n in graph.graph.node]) == (opset >= 20)


def test_the_zoo_exports(tmp_path, rng):
    x = rng.standard_normal((6, 3, 32, 32)).astype(np.float32)
    graph = run_both(models.cnn((3, 32, 32), 10), x, tmp_path)  # the seed CNN
    ops = [n.op_type for n in graph.graph.node]
    assert ops == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm"]
    digits = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    run_both(models.cnn((1, 8, 8), 10, padding=1), digits, tmp_path)
    run_both(models.build("mlp", (1, 8, 8), 10), digits, tmp_path)


def test_batchnorm_folds_into_the_layer_before_it(tmp_path, rng):
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    model = with_statistics(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.BatchNorm2d(8),
                                          nn.Flatten(), nn.Linear(512, 5), nn.BatchNorm1d(5)), x)
    graph = run_both(model, x, tmp_path)
    ops = [n.op_type for n in graph.graph.node]
    assert ops == ["Conv", "Relu", "BatchNormalization", "Flatten", "Gemm"]  # the second BN has no layer to fold into


def test_a_mix_of_layers_in_one_model(tmp_path, rng):
    x = rng.standard_normal((5, 3, 16, 16)).astype(np.float32)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8), nn.GELU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, groups=4, stride=2), nn.SiLU(), nn.MaxPool2d(2, ceil_mode=True)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 6), nn.LayerNorm(6),
        nn.LeakyReLU(0.1), nn.Linear(6, 3), nn.Softmax(-1))
    graph = run_both(with_statistics(model, x), x, tmp_path)
    assert [n.name for n in graph.graph.node][:2] == ["0/Conv", "2/Gelu"]  # nodes are named after their layers
    assert "Conv2d(3, 8" in graph.graph.node[0].doc_string


@pytest.mark.parametrize("bits, group", [(8, None), (8, 32), (4, 32), (4, 64)])
def test_quantized_models_export_with_embers_integers_and_scales(bits, group, tmp_path, rng):
    x = rng.standard_normal((5, 3, 12, 12)).astype(np.float32)
    base = models.cnn((3, 12, 12), 10)
    qmodel, _ = quant.quantize(base, bits=bits, group_size=group)
    # A float layer before a quantized one (the convolution; the first quantized layer's own float
    # epilogue before the second) rounds in ONNX Runtime differently from Ember by an ulp here and
    # there, which now and then moves an activation across a rounding boundary: one int8 step, 1/127
    # of its row's largest value. Hence "within the quantization step".
    graph = run_both(qmodel, x, tmp_path, tol=2 / 127)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("MatMulInteger") == 2 and "Gemm" not in ops
    mlp, _ = quant.quantize(models.build("mlp", (1, 5, 7), 4), bits=bits, group_size=group)  # K = 35: padded
    run_both(mlp, rng.standard_normal((5, 1, 5, 7)).astype(np.float32), tmp_path, tol=2 / 127)
    zeros = np.zeros((3, 1, 5, 7), np.float32)  # a row of zeros: every activation scale 0
    run_both(mlp, zeros, tmp_path)


@pytest.mark.parametrize("bits, group", [(8, None), (8, 8), (4, 8), (4, 32)])
def test_a_quantized_linear_on_inputs_of_rank_3_and_4(bits, group, tmp_path, rng):
    # Ember quantizes each row of the last axis on its own, whatever the leading axes are; K = 20
    # makes groups of 8 padded. Both opsets: ReduceMax takes its axes differently before 18.
    layer = quant.QuantLinear.from_linear(nn.Linear(20, 6), bits, group)
    for shape in [(6, 20), (3, 4, 20)]:
        x = rng.standard_normal((5,) + shape).astype(np.float32)
        for opset in (21, 17):
            graph = run_both(nn.Sequential(layer), x, tmp_path, opset=opset)
            assert "MatMulInteger" in [n.op_type for n in graph.graph.node]
    square = quant.QuantLinear.from_linear(nn.Linear(6, 6), bits, group)  # a sequence as long as K
    run_both(nn.Sequential(square), rng.standard_normal((2, 6, 6)).astype(np.float32), tmp_path)


def test_a_linear_on_3d_inputs_stores_its_weight_once(tmp_path, rng):
    x = rng.standard_normal((4, 3, 9)).astype(np.float32)
    graph = run_both(nn.Sequential(nn.Linear(9, 4)), x, tmp_path)
    assert sorted(i.name for i in graph.graph.initializer) == ["0.bias", "0.weight_t"]
    graph = run_both(nn.Sequential(nn.Linear(9, 4, bias=False)), x, tmp_path)
    assert [i.name for i in graph.graph.initializer] == ["0.weight_t"]


def test_export_leaves_every_modules_training_flag_as_it_was(tmp_path, rng):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.2)))
    model.train()
    model[1].eval()
    model[2][0].eval()
    before = [m.training for m in model.modules()]
    ember_onnx.export(model, rng.standard_normal((2, 4)).astype(np.float32), tmp_path / "m.onnx")
    assert [m.training for m in model.modules()] == before
    with pytest.raises(ValueError):  # a failing forward (the wrong width) restores them too
        ember_onnx.export(model, rng.standard_normal((2, 5)).astype(np.float32), tmp_path / "w.onnx")
    assert [m.training for m in model.modules()] == before
    assert not (tmp_path / "w.onnx").exists()


def test_the_graph_is_readable_and_checked(tmp_path, rng):
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    model = models.cnn((1, 8, 8), 10, padding=1)
    path = ember_onnx.export(model, x, tmp_path / "m.onnx", metadata={"note": "hello", "mean": [0.5]})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert inp.name == "input" and out.name == "output"
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == ["batch", 10]
    assert {p.key: p.value for p in graph.metadata_props} == {"note": "hello", "mean": "[0.5]"}
    assert graph.producer_name == "ember" and {i.name for i in graph.graph.initializer} >= {"0.weight", "4.bias"}
    static = ember_onnx.export(model, x, tmp_path / "s.onnx", dynamic_batch=False, input_name="pixels",
                               output_name="logits")
    graph = onnx.load(str(static))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [2, 1, 8, 8]
    assert graph.graph.output[0].name == "logits"


class Doubler(nn.Module):
    def forward(self, x):
        return x * 2


class Residual(nn.Sequential):
    """A Sequential subclass with its own forward: x + its layers' output, not their chain."""

    def forward(self, x):
        return x + super().forward(x)


class Block(nn.Sequential):
    """A Sequential subclass that keeps Sequential's forward: a chain like any other."""


@pytest.mark.parametrize("model, message", [
    (lambda: nn.Sequential(nn.Flatten(), nn.Embedding(4, 2)), r"layer 1 \(Embedding\) has no ONNX form"),
    (lambda: nn.Sequential(nn.Flatten(), Residual(nn.Linear(192, 192), nn.ReLU())),
     r"layer 1 \(Residual\) has no ONNX form"),
    (lambda: Residual(nn.Flatten(), nn.Linear(192, 192)), "Residual computes its own forward"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 4), Doubler()), r"layer 2 \(Doubler\) has no ONNX form"),
    (lambda: nn.Sequential(nn.Flatten(0)), "flattens the batch dimension"),
    (lambda: nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)), "no running statistics"),
    (lambda: nn.Sequential(nn.AdaptiveAvgPool2d(3)), "pools windows of different sizes"),
    (lambda: nn.Sequential(nn.MaxPool2d(2, return_indices=True)), r"layer 0 \(MaxPool2d with return_indices=True\)"),
    (lambda: quant.quantize(nn.Sequential(nn.Flatten(), nn.Linear(192, 4)), bits=4, codebook=True)[0],
     r"layer 1 is int4 in the codebook format, whose scaled codebook values are not int8"),
])
def test_what_onnx_cannot_express_is_an_error_naming_the_layer(model, message, tmp_path, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        ember_onnx.export(model(), x, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_sequential_subclass_keeping_sequentials_forward_exports_as_its_chain(tmp_path, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    run_both(nn.Sequential(Block(nn.Linear(6, 5), nn.ReLU()), nn.Linear(5, 3)), x, tmp_path)
    run_both(Block(nn.Linear(6, 3), nn.Tanh()), x, tmp_path)


def test_bad_arguments(tmp_path, rng, monkeypatch):
    x = rng.standard_normal((2, 4)).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        ember_onnx.export(model, x, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="example_input must be a batch"):
        ember_onnx.export(model, x[0], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="model must be an ember.nn.Module"):
        ember_onnx.export(lambda t: t, x, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="input_name and output_name must differ, both are 'x'"):
        ember_onnx.export(model, x, tmp_path / "m.onnx", input_name="x", output_name="x")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ember_onnx.export(model, x, tmp_path / "no" / "m.onnx")

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 2)

        def forward(self, t):
            return self.inner(t) * 3

    with pytest.raises(ValueError, match="Custom computes its own forward"):
        ember_onnx.export(Custom(), x, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'ember\[onnx\]'"):
        ember_onnx.export(model, x, tmp_path / "m.onnx")


def test_ember_export_command(tmp_path, capsys):
    ckpt = tmp_path / "d.safetensors"
    assert cli.main(["train", "--epochs", "2", "--out", str(ckpt), "--verbose", "0"]) == 0
    assert cli.main(["quantize", str(ckpt), "--bits", "8"]) == 0
    capsys.readouterr()
    for source in (ckpt, tmp_path / "d.int8.safetensors"):
        out_path = tmp_path / (source.stem + ".onnx")
        assert cli.main(["export", str(source), "--onnx", str(out_path)]) == 0
        out = capsys.readouterr().out
        assert "any batch" in out and "100.00% of the classes agree" in out
        graph = onnx.load(str(out_path))
        meta = {p.key: p.value for p in graph.metadata_props}
        assert meta["ember.dataset"] == '"digits"' or meta["ember.dataset"] == "digits"
        assert '"scale": 0.0625' in meta["ember.input"]
    assert cli.main(["export", str(tmp_path / "none.safetensors"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_ember_export_turns_any_export_failure_into_a_message(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "d.safetensors"
    models.cnn((1, 8, 8), 10, padding=1).save(ckpt, config={"dataset": "digits", "scale": 1 / 16})

    def refused(*args, **kwargs):
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] Inferred shape and existing shape differ")

    monkeypatch.setattr(ember_onnx, "export", refused)
    assert cli.main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "the export to" in err and "failed, nothing was written: InferenceError: [ShapeInferenceError]" in err
    monkeypatch.undo()

    def unrunnable(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Pad should be smaller than kernel")

    monkeypatch.setattr(ort, "InferenceSession", unrunnable)
    assert cli.main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "m.onnx was written, but ONNX Runtime" in capsys.readouterr().err
