"""The precision policy: ``ember.precision``, ``ember.autocast``, Linear in bf16 under it,
``fit(precision=...)``, ``ember train --precision``, and the policy recorded in checkpoints."""

from __future__ import annotations

import re
import threading
import warnings

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

import ember
from ember import cli, models, nn, precision
from ember.data import transforms as T
from ember.kernels import gemm

BF16 = np.dtype(ml_dtypes.bfloat16)


def test_policies_and_their_names():
    assert precision.current() is precision.FP32
    assert precision.get("bf16") is precision.get("bfloat16") is precision.BF16
    assert precision.get("FP32") is precision.FP32
    bf16 = precision.BF16.describe()
    assert bf16 == {"name": "bf16", "param_dtype": "float32", "compute_dtype": "bfloat16",
                    "accumulate_dtype": "float32", "reduce_dtype": "float32", "allow_tf32": False}
    with pytest.raises(ValueError, match="fp16.*NVIDIA GPUs"):
        precision.get("fp16")
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16'"):
        precision.get("int8")
    with pytest.raises(TypeError, match="enabled must be True or False"):
        ember.autocast("bf16", enabled="yes")


def test_autocast_nests_decorates_and_stays_in_its_thread():
    with ember.autocast("bf16") as policy:
        assert policy is precision.BF16 and precision.current() is precision.BF16
        with ember.autocast(enabled=False):
            assert precision.current() is precision.FP32
        assert precision.current() is precision.BF16
        seen = []
        thread = threading.Thread(target=lambda: seen.append(precision.current()))
        thread.start()
        thread.join()
        assert seen == [precision.FP32]  # another thread keeps its own policy
    assert precision.current() is precision.FP32

    @ember.autocast("bf16")
    def inside():
        return precision.current()

    assert inside() is precision.BF16 and precision.current() is precision.FP32
    with pytest.raises(KeyError):
        with ember.autocast("bf16"):
            raise KeyError("the policy is restored on the way out")
    assert precision.current() is precision.FP32


def _bf16_values(a):
    return a.astype(BF16).astype(np.float64)


def test_linear_under_bf16_multiplies_in_bf16_and_sums_in_fp32(rng):
    x = ember.tensor(rng.standard_normal((6, 4, 40)).astype(np.float32), requires_grad=True)
    layer = nn.Linear(40, 24)
    with ember.autocast("bf16"):
        y = layer(x)
    assert y.dtype == np.float32 and y.shape == (6, 4, 24)
    xv, wv = _bf16_values(x.detach().numpy().reshape(-1, 40)), _bf16_values(layer.weight.detach().numpy())
    want = xv @ wv.T + layer.bias.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy().reshape(-1, 24), want, rtol=1e-5, atol=1e-5)
    g = rng.standard_normal((6, 4, 24)).astype(np.float32)
    y.backward(ember.tensor(g))
    gv = _bf16_values(g.reshape(-1, 24))
    np.testing.assert_allclose(x.grad.numpy().reshape(-1, 40), gv @ wv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad.numpy(), gv.T @ xv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.bias.grad.numpy(), g.reshape(-1, 24).sum(0), rtol=1e-5, atol=1e-5)
    assert layer.weight.dtype == np.float32 and layer.weight.grad.dtype == np.float32  # fp32 master weights
    wide = nn.Linear(40, 3)
    wide.weight, wide.bias = nn.Parameter(wide.weight.detach().double()), nn.Parameter(wide.bias.detach().double())
    with ember.autocast("bf16"):  # float64 layers are not float32 work: they stay as they are
        d = wide(x.detach().double())
    want = x.detach().numpy().reshape(-1, 40).astype(np.float64) @ wide.weight.detach().numpy().T
    assert d.dtype == np.float64
    np.testing.assert_allclose(d.detach().numpy().reshape(-1, 3), want + wide.bias.detach().numpy(), rtol=1e-12)


def test_fp32_linear_is_untouched_outside_autocast(rng):
    x = ember.tensor(rng.standard_normal((5, 33)).astype(np.float32))
    layer = nn.Linear(33, 7)
    np.testing.assert_allclose(layer(x).detach().numpy(),
                               x.numpy() @ layer.weight.detach().numpy().T + layer.bias.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert gemm.convert_bf16(x.numpy()).dtype == BF16


def _digits():
    (x, y), (xt, yt) = ember.datasets.digits(seed=0)
    prep = T.Compose([T.ToFloat(1 / 16), T.Normalize([0.3], [0.38])])
    return prep(x), y, prep(xt), yt


def test_the_seed_cnn_trains_in_bf16_as_in_fp32():
    """Same initial weights and batches: the test accuracy within 0.5 points and every epoch's
    training loss within 5% of fp32's (measured: within 4%, accuracies equal, on four seeds)."""
    x, y, xt, yt = _digits()
    runs = {}
    for policy in ("fp32", "bf16"):
        ember.manual_seed(0)
        model = models.cnn((1, 8, 8), 10, padding=1)
        model.compile(optimizer="adam", lr=1e-3, loss="cross_entropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=64, epochs=20, seed=0, verbose=0, precision=policy,
                            transform=T.RandomCrop((8, 8), padding=1))
        runs[policy] = ((model.predict(xt).argmax(1) == yt).mean(), np.array(history.history["loss"]))
    (acc32, loss32), (acc16, loss16) = runs["fp32"], runs["bf16"]
    assert acc32 > 0.9 and abs(acc16 - acc32) <= 0.005, (acc32, acc16)
    assert np.all(np.abs(loss16 - loss32) <= 0.05 * loss32), (loss32, loss16)
    assert precision.current() is precision.FP32  # fit restored the policy


def test_checkpoints_record_the_policy(tmp_path):
    x, y, _, _ = _digits()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.compile(optimizer="adam", loss="cross_entropy")
    model.fit(x[:256], y[:256], epochs=1, verbose=0, precision="bf16",
              callbacks=[ember.callbacks.ModelCheckpoint(tmp_path / "b.safetensors")])
    assert ember.load(tmp_path / "b.safetensors", model).precision["name"] == "bf16"
    model.save(tmp_path / "f.safetensors")
    assert ember.load(tmp_path / "f.safetensors").precision == precision.FP32.describe()
    with pytest.raises(ValueError, match="precision must be one of"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0, precision="fp8")


def test_ember_train_precision_flag(tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    assert cli.main(["train", "--epochs", "2", "--precision", "bf16", "--out", str(out), "--verbose", "0"]) == 0
    assert "precision bf16" in capsys.readouterr().out
    saved = ember.load(out)
    assert saved.precision["name"] == "bf16" and saved.config["precision"] == "bf16"
    with pytest.raises(SystemExit):
        cli.main(["train", "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_conv2d_under_bf16_rounds_the_products_of_forward_and_gradients(rng):
    x = ember.tensor(rng.standard_normal((2, 16, 9, 9)).astype(np.float32), requires_grad=True)
    conv = nn.Conv2d(16, 8, 3, padding=1)
    with ember.autocast("bf16"):
        y = conv(x)
    want = ember.kernels.conv2d.conv2d_fwd(_bf16_values(x.detach().numpy()).astype(np.float32),
                                           _bf16_values(conv.weight.detach().numpy()).astype(np.float32),
                                           conv.bias.detach().numpy(), padding=1)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(ember.tensor(g))
    gx16, gw16 = x.grad.numpy(), conv.weight.grad.numpy()
    want = ember.kernels.conv2d.conv2d_bwd_data(_bf16_values(g).astype(np.float32),
                                                _bf16_values(conv.weight.detach().numpy()).astype(np.float32),
                                                x.shape, padding=1)
    np.testing.assert_allclose(gx16, want, rtol=1e-5, atol=1e-5)  # both gradients' products in bf16 too
    want, _ = ember.kernels.conv2d.conv2d_bwd_weight(_bf16_values(x.detach().numpy()).astype(np.float32),
                                                     _bf16_values(g).astype(np.float32), conv.weight.shape, padding=1)
    np.testing.assert_allclose(gw16, want, rtol=1e-5, atol=1e-4)
    # The bias gradient from the float32 values (summed in double: within float32 rounding of the exact sum).
    np.testing.assert_allclose(conv.bias.grad.numpy(), g.astype(np.float64).sum(axis=(0, 2, 3)), rtol=0,
                               atol=1e-6 * np.abs(g).sum(axis=(0, 2, 3)).max())
    first = nn.Conv2d(3, 8, 3)  # 27 products per output: the float32 kernels, as fast there
    rgb = ember.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(ember.autocast("bf16")(first)(rgb).detach().numpy(), first(rgb).detach().numpy())


def test_checkpoint_stores_parameters_as_bf16_and_loads_them_into_float32(tmp_path, rng):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model(ember.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)))  # running statistics move
    model.eval()
    full, half = tmp_path / "fp32.safetensors", tmp_path / "bf16.safetensors"
    model.save(full)
    model.save(half, dtype="bf16")
    weights = sum(p.size for p in model.parameters())
    assert full.stat().st_size - half.stat().st_size == 2 * weights  # two bytes less per weight, same metadata
    with safe_open(str(half), "numpy") as f:
        stored = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    parameters = {"model." + k for k, _ in model.named_parameters()}
    assert {k for k, d in stored.items() if d == "BF16"} == parameters  # buffers keep their dtype
    assert stored["model.1.running_var"] == "F32" and stored["model.1.num_batches_tracked"] == "I64"
    arrays, _ = ember.checkpoint.read(half)
    assert arrays["model.4.weight"].dtype == BF16
    loaded = ember.load_model(half)
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key].detach().numpy()
        want = value.detach().numpy()
        if "model." + key in parameters:
            want = want.astype(BF16).astype(np.float32)  # round to nearest even, widened exactly
        assert got.dtype == value.dtype and np.array_equal(got, want), key
    x = ember.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    np.testing.assert_allclose(loaded(x).detach().numpy(), model(x).detach().numpy(), rtol=0.05, atol=0.05)
    same = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    same.load_state_dict({k: v.detach().numpy().astype(BF16) for k, v in model.state_dict().items()
                          if "model." + k in parameters}, strict=False)  # bf16 arrays load into float32
    assert same[4].weight.dtype == np.float32
    np.testing.assert_array_equal(same[4].weight.detach().numpy(), loaded[4].weight.detach().numpy())


def test_bf16_checkpoint_refuses_what_it_cannot_store(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="dtype must be None, 'fp32' or 'bf16', got 'fp16'"):
        ember.checkpoint.save(path, model, dtype="fp16")
    with pytest.raises(ValueError, match="optimizer state keeps float32"):
        ember.checkpoint.save(path, model, ember.optim.Adam(model.parameters()), dtype="bf16")
    assert not path.exists()
    with pytest.raises(ValueError, match="expected int64 values, got bfloat16"):
        nn.BatchNorm1d(2).load_state_dict({"num_batches_tracked": np.zeros((), BF16)}, strict=False)


@pytest.mark.parametrize("fields, message", [
    ({"compute_dtype": "float16", "allow_tf32": True}, "compute_dtype must be 'float32' or 'bfloat16'"),
    ({"compute_dtype": "int8"}, "compute_dtype must be 'float32' or 'bfloat16' .*got 'int8'"),
    ({"compute_dtype": np.dtype("float32")}, "compute_dtype must be 'float32' or 'bfloat16'"),
    ({"allow_tf32": True}, "allow_tf32 must be False .*got True"),
    ({"param_dtype": "bfloat16"}, "param_dtype must be 'float32' .*got 'bfloat16'"),
    ({"accumulate_dtype": "float16"}, "accumulate_dtype must be 'float32'"),
    ({"reduce_dtype": "bfloat16"}, "reduce_dtype must be 'float32'"),
])
def test_a_policy_claims_only_work_ember_does(fields, message):
    with pytest.raises(ValueError, match=f"Policy: {message}"):
        precision.Policy("custom", **fields)
    with pytest.raises(ValueError, match="Policy: name must be a non-empty str, got ''"):
        precision.Policy("")


def test_custom_policies_and_checkpoint_records():
    mine = precision.Policy("mine", compute_dtype="bfloat16")
    assert mine.low_precision_matmul and mine.same_work(precision.BF16) and not mine.same_work(precision.FP32)
    with ember.autocast(mine):
        assert precision.current() is mine
    assert precision.from_record(precision.BF16.describe()) is precision.BF16
    assert precision.from_record({"name": "fp32"}) is precision.FP32
    assert precision.from_record(mine.describe()) == mine
    with pytest.raises(ValueError, match="compute_dtype must be 'float32' or 'bfloat16'"):
        precision.from_record({**precision.FP32.describe(), "compute_dtype": "float16"})
    with pytest.raises(ValueError, match="ember.precision must be a JSON object with a name"):
        precision.from_record({"name": "fp32", "loss_scale": 1024})


class _PolicySeen(ember.callbacks.Callback):
    def __init__(self):
        self.seen = set()

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.add(precision.current().name)


def test_a_resumed_fit_goes_on_under_the_recorded_policy(tmp_path):
    x, y, _, _ = _digits()
    x, y = x[:128], y[:128]

    def model():
        ember.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        m.compile(optimizer="adam", loss="cross_entropy")
        return m

    first = tmp_path / "bf16.safetensors"
    model().fit(x, y, epochs=1, verbose=0, precision="bf16", callbacks=[ember.callbacks.ModelCheckpoint(first)])
    seen, after = _PolicySeen(), tmp_path / "resumed.safetensors"
    model().fit(x, y, epochs=2, verbose=0, resume_from=first, callbacks=[seen, ember.callbacks.ModelCheckpoint(after)])
    assert seen.seen == {"bf16"} and ember.load(after).precision["name"] == "bf16"
    assert precision.current() is precision.FP32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded policy asked for again: no warning
        model().fit(x, y, epochs=2, verbose=0, resume_from=first, precision="bf16")
    seen, changed = _PolicySeen(), tmp_path / "fp32.safetensors"
    with pytest.warns(UserWarning, match=re.escape(f"fit: {first} was trained under precision 'bf16' and this run goes "
                                                   "on under 'fp32'") + ".*leave precision unset to keep 'bf16'"):
        model().fit(x, y, epochs=2, verbose=0, resume_from=first, precision="fp32",
                    callbacks=[seen, ember.callbacks.ModelCheckpoint(changed)])
    assert seen.seen == {"fp32"} and ember.load(changed).precision["name"] == "fp32"


def test_only_linear_and_conv2d_follow_the_policy(rng):
    """The table in ember.precision: Linear's products in bf16, the fused linear + cross-entropy
    (GPT.compute_loss's head) as a bf16 Linear followed by the float32 loss; tensor @ and
    attention stay float32."""
    h = ember.tensor(rng.standard_normal((8, 24)).astype(np.float32))
    w = ember.tensor(rng.standard_normal((30, 24)).astype(np.float32))
    t = rng.integers(0, 30, 8)
    q = ember.tensor(rng.standard_normal((1, 2, 5, 8)).astype(np.float32))
    F = nn.functional
    fp32 = (F.linear(h, w).numpy(), F.linear_cross_entropy(h, w, t).item(), (h @ w.T).numpy(),
            F.scaled_dot_product_attention(q, q, q).numpy())
    with ember.autocast("bf16"):
        bf16 = (F.linear(h, w).numpy(), F.linear_cross_entropy(h, w, t).item(), (h @ w.T).numpy(),
                F.scaled_dot_product_attention(q, q, q).numpy())
    np.testing.assert_allclose(bf16[0], _bf16_values(h.numpy()) @ _bf16_values(w.numpy()).T, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(bf16[0], fp32[0])
    logits = _bf16_values(h.numpy()) @ _bf16_values(w.numpy()).T
    shifted = logits - logits.max(axis=1, keepdims=True)
    want = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(8), t])
    assert bf16[1] != fp32[1] and bf16[1] == pytest.approx(want, rel=1e-5)
    np.testing.assert_array_equal(bf16[2], fp32[2])
    np.testing.assert_array_equal(bf16[3], fp32[3])
