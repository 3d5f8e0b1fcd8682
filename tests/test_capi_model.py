"""The C API's models (ember_model_*): a checkpoint written by Python loaded and run from C,
equal to the Python model bit for bit where both run the same kernels and float32 steps (to a
few units in the last place where NumPy computes exponentials); the digits example built with
CMake and run; every damaged file and bad call an error status naming what is wrong."""

import ctypes
import json
import os
import subprocess
from collections import OrderedDict

import numpy as np
import pytest
import safetensors.numpy as st

import ember
from ember import checkpoint, cli, models, nn, quant
from capi_build import CXX, library, run_example
from checkpoint_files import rewritten
from concurrency import run_threads

OK, INVALID, UNSUPPORTED, IO = 0, 1, 2, 5


class Model:
    """ember_model_* through ctypes."""

    lib = None

    def __init__(self, path):
        self.handle = ctypes.c_void_p()
        self.status = self.lib.ember_model_load(str(path).encode(), ctypes.byref(self.handle))
        self.error = self.lib.ember_last_error().decode()

    def __del__(self):
        if self.lib is not None and getattr(self, "handle", None):
            self.lib.ember_model_free(self.handle)

    def output_shape(self, shape):
        rank, out = ctypes.c_int(), (ctypes.c_int64 * 8)()
        status = self.lib.ember_model_output_shape(self.handle, len(shape), (ctypes.c_int64 * len(shape))(*shape),
                                                   ctypes.byref(rank), out)
        return status, tuple(out[:rank.value]), self.lib.ember_last_error().decode()

    def forward(self, x, y=None, y_size=None):
        status, shape, text = self.output_shape(x.shape)
        assert status == OK, text
        y = np.full(shape, np.nan, np.float32) if y is None else y
        status = self.lib.ember_model_forward(self.handle, x.ndim, (ctypes.c_int64 * x.ndim)(*x.shape),
                                              ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data),
                                              ctypes.c_int64(y.size if y_size is None else y_size))
        assert status == OK, self.lib.ember_last_error().decode()
        return y

    @property
    def layers(self):
        return [self.lib.ember_model_layer(self.handle, i).decode()
                for i in range(self.lib.ember_model_num_layers(self.handle))]


@pytest.fixture(scope="module")
def lib():
    c = library()
    Model.lib = c
    assert c.ember_set_num_threads(ember.get_num_threads()) == 0
    return c


def python_forward(model, x):
    with ember.no_grad():
        return model.eval()(ember.tensor(x)).numpy()


def saved(model, tmp_path, name="m.safetensors", **kw):
    path = tmp_path / name
    ember.save(path, model.eval(), **kw)
    return path


def check(lib, model, x, tmp_path, exact=True):
    m = Model(saved(model, tmp_path))
    assert m.status == OK, m.error
    want = python_forward(model, x)
    got = m.forward(x)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7)
    return m


def images(rng, batch, shape=(3, 12, 12)):
    return rng.standard_normal((batch, *shape)).astype(np.float32)


# Each layer after a convolution (so that its input is a real activation), and the float32 steps
# it takes: the same as Python's (exact) or NumPy's own exponentials and means (close).
LAYERS = {
    "conv same": (lambda: nn.Conv2d(4, 6, (3, 2), padding="same", dilation=(1, 2)), True),
    "conv strided grouped": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=(1, 0), groups=2, bias=False), True),
    "conv depthwise": (lambda: nn.Conv2d(4, 4, 3, groups=4, padding=1), True),
    "max pool": (lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True), True),
    "max pool dilated": (lambda: nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)), True),
    "avg pool": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), True),
    "avg pool ceil": (lambda: nn.AvgPool2d(2, ceil_mode=True), True),
    "adaptive": (lambda: nn.AdaptiveAvgPool2d((3, 2)), True),
    "global": (lambda: nn.AdaptiveAvgPool2d(1), True),
    "batch norm": (lambda: nn.BatchNorm2d(4), True),
    "batch norm plain": (lambda: nn.BatchNorm2d(4, affine=False, eps=1e-3), True),
    "relu": (nn.ReLU, True),
    "leaky relu": (lambda: nn.LeakyReLU(0.3), True),
    "gelu": (nn.GELU, True),
    "dropout": (lambda: nn.Dropout(0.5), True),
    "identity": (nn.Identity, True),
    "flatten middle": (lambda: nn.Flatten(1, 2), True),
    "sigmoid": (nn.Sigmoid, False),
    "tanh": (nn.Tanh, False),
    "silu": (nn.SiLU, False),
    "softmax": (lambda: nn.Softmax(1), False),
    "softmax implicit dim": (nn.Softmax, False),
    "layer norm": (lambda: nn.LayerNorm((12, 12)), False),
}


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")  # the implicit-dim case
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_layer_runs_as_in_python(lib, rng, tmp_path, name, batch):
    make, exact = LAYERS[name]
    ember.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), make())
    if isinstance(model[1], nn.BatchNorm2d):  # running statistics that are not the defaults
        model.train()
        with ember.no_grad():
            model(ember.tensor(images(rng, 8) * 3 + 1))
    check(lib, model, images(rng, batch), tmp_path, exact)


def test_a_deep_mixed_model_with_nested_sequentials(lib, rng, tmp_path):
    ember.manual_seed(2)
    features = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1), bn=nn.BatchNorm2d(8), act=nn.GELU(),
                                         pool=nn.MaxPool2d(2)))
    head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.LayerNorm(32), nn.SiLU(), nn.Dropout(0.2),
                         nn.Linear(32, 5), nn.BatchNorm1d(5), nn.Softmax(-1))
    model = nn.Sequential(OrderedDict(features=features, head=head))
    model.train()
    with ember.no_grad():
        model(ember.tensor(images(rng, 16)))
    m = check(lib, model, images(rng, 4), tmp_path, exact=False)
    assert m.layers[:2] == ["features.conv nn.Conv2d", "features.bn nn.BatchNorm2d"]
    assert m.layers[-1] == "head.7 nn.Softmax"


def test_linear_on_any_leading_dimensions_and_the_seed_cnn(lib, rng, tmp_path):
    ember.manual_seed(3)
    check(lib, nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)), rng.standard_normal((2, 4, 7)).astype(
        np.float32), tmp_path)
    seed_cnn = models.cnn((3, 32, 32), 10)
    for batch in (1, 5):
        check(lib, seed_cnn, images(rng, batch, (3, 32, 32)), tmp_path)


def test_bf16_checkpoints_load_their_weights_exactly(lib, rng, tmp_path):
    ember.manual_seed(4)
    model = models.cnn((1, 8, 8), 10, padding=1)
    path = saved(model, tmp_path, dtype="bf16")
    x = images(rng, 2, (1, 8, 8))
    np.testing.assert_array_equal(Model(path).forward(x), python_forward(ember.load_model(path), x))


@pytest.mark.parametrize("bits, group", [(8, None), (8, 32), (4, 32), (4, 64)])
def test_quantized_models_equal_python_bit_for_bit(lib, rng, tmp_path, bits, group):
    ember.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 70), nn.ReLU(), nn.Linear(70, 10))
    q, _ = quant.quantize(model, bits=bits, group_size=group)
    m = check(lib, q, images(rng, 3), tmp_path)
    assert m.layers[1] == "1 quant.QuantLinear"
    x = images(rng, 1)
    x[0, 0, 0, 0] = np.inf
    y = np.empty((1, 10), np.float32)
    status = lib.ember_model_forward(m.handle, 4, (ctypes.c_int64 * 4)(*x.shape), ctypes.c_void_p(x.ctypes.data),
                                     ctypes.c_void_p(y.ctypes.data), ctypes.c_int64(10))
    assert status == INVALID and "module '1' (quant.QuantLinear): its input holds NaN or infinity" in \
        lib.ember_last_error().decode()


def test_the_digits_example_classifies_as_python_does(examples, tmp_path):
    path = tmp_path / "digits.safetensors"
    assert cli.main(["train", "--epochs", "2", "--out", str(path), "--verbose", "0"]) == 0
    config = json.loads(checkpoint.read(path)[1]["ember.config"])
    _, (x_test, y_test) = ember.datasets.digits()
    x = np.ascontiguousarray(cli.preprocess(x_test, config), np.float32)
    x.tofile(tmp_path / "images.f32")
    done = run_example(examples / "classify", path, tmp_path / "images.f32", len(x), 1, 8, 8, tmp_path / "logits.f32")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[0 nn.Conv2d] [1 nn.ReLU] [2 nn.MaxPool2d]" in done.stdout
    got = np.fromfile(tmp_path / "logits.f32", np.float32).reshape(len(x), 10)
    model = ember.load_model(path)
    previous = ember.get_num_threads()
    ember.set_num_threads(2)  # the example's EMBER_NUM_THREADS
    try:
        want = np.concatenate([python_forward(model, x[i:i + 1]) for i in range(len(x))])
    finally:
        ember.set_num_threads(previous)
    np.testing.assert_array_equal(got, want)
    classes = [int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("image ")]
    assert classes == want.argmax(1).tolist()
    assert (np.array(classes) == y_test).mean() > 0.5  # two epochs learn the digits
    assert f"{len(x)} images, batch 1: mean" in done.stdout


def test_several_threads_may_run_one_model_at_once(lib, rng, tmp_path):
    ember.manual_seed(6)
    model = models.cnn((3, 16, 16), 10, padding=1)
    m = Model(saved(model, tmp_path))
    inputs = [images(rng, b, (3, 16, 16)) for b in (1, 2, 3, 4)]
    want = [m.forward(x) for x in inputs]
    def work(i):
        for _ in range(20):
            np.testing.assert_array_equal(m.forward(inputs[i % 4]), want[i % 4])

    run_threads(work, 6)


# ---------------------------------------------------------------- bad files and bad calls
@pytest.fixture()
def good_file(tmp_path):
    ember.manual_seed(7)
    return saved(models.cnn((1, 8, 8), 10, padding=1), tmp_path, "good.safetensors")


def architecture(change):
    def edit(meta):
        arch = json.loads(meta["ember.architecture"])
        change(arch)
        meta["ember.architecture"] = json.dumps(arch)
    return edit


def load_error(path):
    m = Model(path)
    assert not m.handle
    return m.status, m.error


def test_files_that_cannot_be_read(lib, good_file, tmp_path):
    status, text = load_error(tmp_path / "missing.safetensors")
    assert status == IO and text.startswith("ember_model_load: cannot open ") and "missing.safetensors" in text
    status, text = load_error(tmp_path)
    assert status == IO and "cannot read" in text
    data = good_file.read_bytes()
    for name, content, message in [
        ("empty", b"", "shorter than its 8-byte header length"),
        ("truncated", data[: len(data) // 2], "lie outside the file"),
        ("huge header", (10**12).to_bytes(8, "little") + data[8:], "exceeds the file"),
        ("not json", len(b"{oops").to_bytes(8, "little") + b"{oops", "its header: JSON"),
        ("deep", (2000).to_bytes(8, "little") + b"[" * 1000 + b"]" * 1000, "nesting deeper than 64"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        status, text = load_error(path)
        assert status == IO and name in text and message in text, (name, text)
    path = tmp_path / "foreign.safetensors"
    st.save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"format": "pt"})
    assert load_error(path) == (IO, f"ember_model_load: {path} is not an Ember checkpoint (format 'none', "
                                    "expected 'ember-checkpoint-1')")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it must not wait for one
    status, text = load_error(fifo)
    assert status == IO and "not a regular file" in text, text
    assert lib.ember_model_load(None, ctypes.byref(ctypes.c_void_p())) == INVALID
    assert lib.ember_last_error() == b"ember_model_load: path is NULL"
    assert lib.ember_model_load(str(good_file).encode(), None) == INVALID


@pytest.mark.parametrize("edit_meta, edit_arrays, status, message", [
    (lambda m: m.pop("ember.architecture"), None, IO, "does not record its model's architecture"),
    (lambda m: m.update({"ember.architecture": "{"}), None, IO, "metadata ember.architecture is not valid"),
    (architecture(lambda a: a["children"]["0"]["config"].update(kernel_size=5)), None, IO,
     "tensor model.0.weight has shape (32, 1, 3, 3), its layer needs (32, 1, 5, 5)"),
    (architecture(lambda a: a["children"]["0"]["config"].update(kernel_size=-1)), None, IO,
     "module '0': config kernel_size must be an int >= 1 or a pair of them"),
    (architecture(lambda a: a["children"]["4"]["config"].update(in_features="many")), None, IO,
     "module '4': config in_features must be an int >= 0"),
    (architecture(lambda a: a["children"]["1"].update({"class": "nn.Embedding"})), None, UNSUPPORTED,
     "module '1' is a nn.Embedding, which the C API cannot run"),
    (architecture(lambda a: a["children"].update({"1": {"class": "MyBlock", "config": {},
                                                         "children": {"a": a["children"]["1"]}}})),
     None, UNSUPPORTED, "module '1' (MyBlock) has sub-modules"),
    (None, lambda a: a.pop("model.4.bias"), IO, "holds no tensor model.4.bias"),
    (None, lambda a: a.update({"model.9.weight": np.zeros(2, np.float32)}), IO,
     "holds tensor model.9.weight, which no layer of its model uses"),
    (None, lambda a: a.update({"model.0.bias": np.zeros(32, np.int32)}), IO, "model.0.bias is I32, not F32 or BF16"),
])
def test_damaged_checkpoints_are_refused_naming_what(lib, good_file, tmp_path, edit_meta, edit_arrays, status, message):
    path = rewritten(good_file, tmp_path / "edited.safetensors", edit_meta, edit_arrays)
    got_status, text = load_error(path)
    assert got_status == status and message in text, text
    assert str(path) in text  # the file is named, whatever the status


@pytest.mark.parametrize("edit, message", [
    (lambda a: a["model.1.weight_data"].__setitem__(0, -128), "int8 weights must lie in [-127, 127], found -128"),
    (lambda a: a["model.1.weight_colsum"].__setitem__(2, 99), "channel 2's column sum is 99"),
    (lambda a: a["model.1.weight_scales"].__setitem__(1, 0.0), "scales must be finite and > 0"),
    (lambda a: a.update({"model.1.weight_data": a["model.1.weight_data"][:-4]}), "its layer needs I8 with"),
])
def test_damaged_quantized_weights_are_refused(lib, tmp_path, edit, message):
    ember.manual_seed(8)
    q, _ = quant.quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 20)), bits=8)
    good = saved(q, tmp_path, "q.safetensors")
    status, text = load_error(rewritten(good, tmp_path / "bad.safetensors", None, edit))
    assert status == IO and message in text, text
    def bits(a):  # 2**32 + 8 read as an int once passed for 8 (with no column sums read)
        a["children"]["1"]["config"]["bits"] = 2**32 + 8

    status, text = load_error(rewritten(good, tmp_path / "bits.safetensors", architecture(bits)))
    assert status == IO and "config bits must be 8 or 4" in text, text
    status, text = load_error(rewritten(good, tmp_path / "layout.safetensors",
                                        lambda m: m.update({"ember.quant": json.dumps({"layout": "v0"})})))
    assert status == IO and "layout" in text


def test_damaged_grouped_int8_weights_are_refused(lib, tmp_path):
    ember.manual_seed(8)
    q, _ = quant.quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 20)), bits=8, group_size=32)
    good = saved(q, tmp_path, "q.safetensors")
    status, text = load_error(rewritten(good, tmp_path / "bad.safetensors", None,
                                        lambda a: a["model.1.weight_data"].__setitem__(3, 0)))
    assert status == IO and "int8 weights must lie in [-127, 127] (bytes 1 to 255)" in text, text
    status, text = load_error(rewritten(good, tmp_path / "short.safetensors", None,
                                        lambda a: a.update({"model.1.weight_scales": a["model.1.weight_scales"][:-2]})))
    assert status == IO and "its layer needs U8 with" in text, text


def test_a_codebook_model_is_unsupported_not_damaged(lib, tmp_path):
    ember.manual_seed(8)
    q, _ = quant.quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 20)), bits=4, codebook=True)
    status, text = load_error(saved(q, tmp_path, "codebook.safetensors"))
    assert status == UNSUPPORTED and "module '1' holds int4 weights in the codebook format" in text, text


def test_a_model_applying_a_layer_twice_is_unsupported_not_damaged(lib, tmp_path):
    twice = nn.Linear(8, 8)
    status, text = load_error(saved(nn.Sequential(twice, nn.ReLU(), twice), tmp_path, "twice.safetensors"))
    assert status == UNSUPPORTED and "module '2' is module '0' applied again" in text, text


def test_bad_calls_name_the_argument(lib, good_file):
    m = Model(good_file)
    assert m.status == OK
    assert m.output_shape((2, 1, 8, 8))[:2] == (OK, (2, 10))
    for shape, message in [((2, 3, 8, 8), "module '0' (nn.Conv2d): expects an (N, 1, H, W) input, got (2, 3, 8, 8)"),
                           ((2, 1, 6, 6), "module '4' (nn.Linear): expects inputs of 512 features"),
                           ((64,), "module '0' (nn.Conv2d): expects an (N, 1, H, W) input, got (64,)"),
                           ((2, -1, 8, 8), "shape has a negative size -1"),
                           ((1,) * 9, "rank must be between 1 and 8, got 9"),
                           ((2**40, 1, 2**12, 2**12), "too large")]:
        status, _, text = m.output_shape(shape)
        assert status == INVALID and text.startswith("ember_model_output_shape: ") and message in text, text
    x, y, wide = np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 10), np.float32), np.zeros(21, np.float32)
    shape = (ctypes.c_int64 * 4)(2, 1, 8, 8)
    xp, yp = ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data)
    for args, message in [((m.handle, 4, shape, xp, yp, 19), "y_size (19) is smaller than the output (20 values)"),
                          ((m.handle, 4, shape, None, yp, 20), "x is NULL"),
                          ((m.handle, 4, shape, xp, None, 20), "y is NULL"),
                          ((m.handle, 4, None, xp, yp, 20), "shape is NULL"),
                          ((None, 4, shape, xp, yp, 20), "model is NULL"),
                          ((m.handle, 4, shape, xp, xp, 20), "y must not share memory with x"),
                          ((m.handle, 4, shape, xp, ctypes.c_void_p(wide.ctypes.data + 2), 20), "not aligned")]:
        assert lib.ember_model_forward(*args[:5], ctypes.c_int64(args[5])) == INVALID
        assert message in lib.ember_last_error().decode()
    assert lib.ember_model_num_layers(None) == 0 and lib.ember_model_layer(m.handle, 7) is None
    lib.ember_model_free(None)


CPP_MODEL = r"""
#include <cstdio>
#include <utility>
#include <vector>
#include "ember/ember.hpp"
int main(int argc, char** argv) {
  if (argc < 3) return 2;
  try {
    const ember::Model model(argv[1]);
    std::vector<float> x(2 * 1 * 8 * 8);
    std::FILE* f = std::fopen(argv[2], "rb");
    if (!f || std::fread(x.data(), sizeof(float), x.size(), f) != x.size()) return 2;
    std::fclose(f);
    const std::vector<float> y = model.forward({2, 1, 8, 8}, x.data());
    std::printf("%zu layers, %zu outputs\n", model.layers().size(), y.size());
    std::fwrite(y.data(), sizeof(float), y.size(), stdout);
    ember::Model first(argv[1]);
    const ember::Model taken = std::move(first);  // movable
    if (taken.layers() != model.layers()) return 3;
    model.forward({2, 3, 8, 8}, x.data());     // throws: wrong channels
  } catch (const ember::Error& e) {
    std::printf("\nerror %d: %s\n", static_cast<int>(e.status()), e.what());
  }
}
"""


@pytest.mark.skipif(CXX is None, reason="no C++ compiler (c++) on PATH")
def test_the_cpp_model_wrapper(good_file, tmp_path, rng):
    source, exe = tmp_path / "model.cpp", tmp_path / "model"
    source.write_text(CPP_MODEL)
    build = subprocess.run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{ember.get_include()}", str(source),
                            "-o", str(exe), f"-L{ember.get_lib()}", f"-Wl,-rpath,{ember.get_lib()}", "-lember"],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    done = subprocess.run([str(exe), str(good_file), str(tmp_path / "x.f32")], capture_output=True, timeout=60,
                          env=dict(os.environ, EMBER_NUM_THREADS=str(ember.get_num_threads())))
    head, rest = done.stdout.split(b"\n", 1)
    assert head == b"7 layers, 20 outputs"
    np.testing.assert_array_equal(np.frombuffer(rest[:80], np.float32).reshape(2, 10),
                                  python_forward(ember.load_model(good_file), x))
    assert b"error 1: ember_model_output_shape: module '0' (nn.Conv2d): expects an (N, 1, H, W) input" in rest[80:]
