"""Checkpoints are untrusted input: a damaged or edited file is refused as a whole, naming the
file and the key, before anything in the model, optimizer or random state changes; saving is
atomic, keeps the destination's mode, writes through links and cleans up after killed saves."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as st

import ember
from ember import checkpoint, nn, quant


def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _trained(tmp_path):
    ember.manual_seed(1)
    model = _mlp()
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    x = ember.randn(5, 6)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), np.array([0, 1, 2, 0, 1])).backward()
        opt.step()
    path = tmp_path / "m.safetensors"
    ember.save(path, model, opt, epoch=2, config={"name": "mlp"})
    return path


def _rewrite(path, *, meta=None, arrays=None, drop=()):
    a, m = checkpoint.read(path)
    a.update(arrays or {})
    m.update(meta or {})
    for k in drop:
        a.pop(k, None)
        m.pop(k, None)
    st.save_file(a, str(path), metadata=m)


def _snapshot(model, opt):
    weights = {k: v.cpu().numpy().copy() for k, v in model.state_dict().items()}
    state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
             for i, s in opt.state_dict()["state"].items()}
    groups = json.dumps(opt.state_dict()["param_groups"])
    return weights, state, groups, json.dumps(ember.default_generator().numpy.bit_generator.state)


def _assert_unchanged(before, model, opt):
    after = _snapshot(model, opt)
    for k in before[0]:
        np.testing.assert_array_equal(before[0][k], after[0][k], err_msg=k)
    assert before[1].keys() == after[1].keys()
    for i in before[1]:
        for k, v in before[1][i].items():
            np.testing.assert_array_equal(v, after[1][i][k])
    assert before[2] == after[2] and before[3] == after[3]


BAD_FILES = {
    "epoch": dict(meta={"ember.epoch": "two"}, match="ember.epoch"),
    "optimizer-json": dict(meta={"ember.optimizer": "{not json"}, match=""),
    "optimizer-class": dict(meta={"ember.optimizer": json.dumps({"param_groups": [], "scalars": {}})},
                            match="optimizer"),
    "optimizer-index": dict(arrays={"optimizer.99.exp_avg": np.zeros((8, 6), np.float32)}, match="99"),
    "optimizer-key": dict(arrays={"optimizer.0.nonsense": np.zeros((8, 6), np.float32)}, match="nonsense"),
    "optimizer-transposed": dict(arrays={"optimizer.0.exp_avg": np.zeros((6, 8), np.float32)}, match="exp_avg"),
    "optimizer-int-state": dict(arrays={"optimizer.0.exp_avg": np.zeros((8, 6), np.int32)}, match="exp_avg"),
    "rng": dict(meta={"ember.rng": json.dumps({"bit_generator": "PCG64", "state": "nope"})}, match="ember.rng"),
    "config": dict(meta={"ember.config": "[1, 2]"}, match="ember.config"),
    "weight-int-bits": dict(arrays={"model.0.weight": np.arange(48, dtype=np.int32).reshape(8, 6)},
                            match="0.weight"),
}


@pytest.mark.parametrize("case", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_changes_nothing(device, tmp_path, case):
    path = _trained(tmp_path)
    _rewrite(path, meta=case.get("meta"), arrays=case.get("arrays"))
    ember.manual_seed(7)
    model = _mlp()
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    nn.functional.cross_entropy(model(ember.randn(5, 6)), np.array([0, 1, 2, 0, 1])).backward()
    opt.step()  # some state of its own
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")) as info:
        ember.load(path, model, opt)
    assert case["match"] in str(info.value)
    _assert_unchanged(before, model, opt)


def test_optimizer_hyper_parameters_checked_at_load(device, tmp_path):
    path = _trained(tmp_path)
    a, m = checkpoint.read(path)
    desc = json.loads(m["ember.optimizer"])
    for bad, match in (({"lr": "0.01"}, "lr"), ({"betas": [0.9, 1.5]}, "betas"), ({"amsgrad": "yes"}, "amsgrad"),
                       ({"surprise": 1}, "surprise")):
        d = json.loads(json.dumps(desc))
        d["param_groups"][0].update(bad)
        _rewrite(path, meta={"ember.optimizer": json.dumps(d)})
        model = _mlp()
        opt = ember.optim.Adam(model.parameters(), lr=3e-3)
        before = _snapshot(model, opt)
        with pytest.raises(ValueError, match=match):
            ember.load(path, model, opt)
        _assert_unchanged(before, model, opt)
        assert opt.param_groups[0]["lr"] == 3e-3


def test_load_state_dict_refuses_kinds_and_half_loads_nothing(device):
    model = _mlp()
    before = {k: v.cpu().numpy().copy() for k, v in model.state_dict().items()}
    sd = {k: v.cpu().numpy().copy() for k, v in model.state_dict().items()}
    sd["2.bias"] = np.array([1, 2, 3], np.int32)
    sd["0.weight"] = sd["0.weight"] + 1
    with pytest.raises(ValueError, match="2.bias: expected float32 values, got int32"):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.cpu().numpy(), before[k])
    sd["2.bias"] = np.array([1, 2, 3], np.float64)  # floats into floats are cast, as PyTorch does
    model.load_state_dict(sd)
    np.testing.assert_array_equal(model.state_dict()["2.bias"].cpu().numpy(), [1, 2, 3])


def test_load_state_dict_checks_the_values_as_they_would_be_stored():
    """A value is checked after the cast into its buffer: a float64 that overflows float32, or
    packed quantized bytes given in another integer dtype, are refused like their stored form."""
    model = _mlp()
    sd = {k: v.cpu().numpy().copy() for k, v in model.state_dict().items()}
    sd["0.weight"] = sd["0.weight"].astype(np.float64)
    sd["0.weight"][0, 1] = 1e300
    with pytest.raises(ValueError, match=r"0.weight: values outside the range of float32"):
        model.load_state_dict(sd)
    sd["0.weight"][0, 1] = np.inf  # an infinity is a value float32 holds
    model.load_state_dict(sd)

    grouped = quant.QuantLinear(16, 16, True, bits=8, group_size=16)
    state = {k: v.numpy().copy() for k, v in grouped.state_dict().items()}
    state["weight_data"] = np.zeros(state["weight_data"].shape, np.int8)  # byte 0 after the cast: q = -128
    with pytest.raises(ValueError, match=r"weight_data: int8 weights must lie in \[-127, 127\]"):
        grouped.load_state_dict(state)
    codebook = quant.QuantLinear(16, 256, True, bits=4, codebook=True)
    state = {k: v.numpy().copy() for k, v in codebook.state_dict().items()}
    state["weight_scales"] = np.full(state["weight_scales"].shape, 255, np.int16)  # NaN float scales as bytes
    with pytest.raises(ValueError, match=r"weight_scales: the float scales must be finite"):
        codebook.load_state_dict(state)


def test_optimizer_load_state_dict_checks_before_changing(device):
    model = _mlp()
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["state"] = {0: {"momentum_buffer": np.zeros((6, 8), np.float32)}}
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(6, 8\)"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = "fast"
    with pytest.raises(TypeError, match="lr must be a number"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.state == {}


# ----------------------------------------------------------------------------- quantized checkpoints


def _quantized(tmp_path, bits):
    model = _mlp()
    qmodel, _ = quant.quantize(model, bits=bits)
    path = tmp_path / f"q{bits}.safetensors"
    qmodel.save(path)
    return path, model


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.0, np.inf])
def test_bad_scales_refused_at_load(device, tmp_path, bits, bad):
    path, model = _quantized(tmp_path, bits)
    a, _ = checkpoint.read(path)
    scales = a["model.2.weight_scales"].copy()
    scales[1] = bad
    _rewrite(path, arrays={"model.2.weight_scales": scales})
    target = quant.quantized_structure(_mlp(), bits=bits)
    before = {k: v.cpu().numpy().copy() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"q\d\.safetensors.*2\.weight_scales"):
        target.load(path)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v.cpu().numpy(), before[k])


def test_tampered_colsum_refused(device, tmp_path):
    path, _ = _quantized(tmp_path, 8)
    a, _ = checkpoint.read(path)
    colsum = a["model.0.weight_colsum"].copy()
    colsum[3] += 250
    _rewrite(path, arrays={"model.0.weight_colsum": colsum})
    with pytest.raises(ValueError, match=r"0\.weight_colsum: channel 3"):
        quant.quantized_structure(_mlp(), bits=8).load(path)
    data = a["model.0.weight_data"].copy()
    data[0] = -128
    _rewrite(path, arrays={"model.0.weight_data": data, "model.0.weight_colsum": a["model.0.weight_colsum"]})
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        quant.quantized_structure(_mlp(), bits=8).load(path)


def test_a_partial_load_of_int8_bytes_meets_the_column_sums_held():
    model = quant.quantized_structure(_mlp(), bits=8)
    source, _ = quant.quantize(_mlp(), bits=8)
    state = {k: v.numpy() for k, v in source.state_dict().items() if not k.endswith("weight_colsum")}
    with pytest.raises(ValueError, match=r"0\.weight_colsum: channel 0"):  # the empty shell's sums are 0
        model.load_state_dict(state, strict=False)
    assert not model[0].weight_data.numpy().any()  # nothing loaded
    model.load_state_dict({k: v.numpy() for k, v in source.state_dict().items()})
    x = ember.tensor(np.ones((2, model[0].in_features), np.float32))
    with ember.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), source(x).numpy())


# ----------------------------------------------------------------------------- saving


def test_save_keeps_mode_and_writes_through_links(device, tmp_path):
    model = _mlp()
    target = tmp_path / "real.safetensors"
    model.save(target)
    os.chmod(target, 0o644)
    model.save(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    os.chmod(target, 0o640)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    fresh = _mlp()
    fresh.load(link)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy(), err_msg=k)


def test_new_file_gets_the_umask_mode(device, tmp_path):
    old = os.umask(0o027)
    try:
        _mlp().save(tmp_path / "new.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.safetensors").st_mode) == 0o640


def test_killed_save_leaves_a_temp_file_the_next_save_removes(device, tmp_path):
    path = tmp_path / "big.safetensors"
    script = (
        "import os, numpy as np, ember\n"
        "from ember import checkpoint\n"
        "real = os.replace\n"
        "def die(*a, **k):\n"
        "    os.kill(os.getpid(), 9)\n"
        "checkpoint.os.replace = die\n"
        f"checkpoint.atomic_write({str(path)!r}, b'x' * 1000)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "big.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".big.safetensors.ember-tmp-")
    _mlp().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]


def test_temp_file_is_created_beside_the_destination(device, tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.os, "open", spy)
    sub = tmp_path / "deep"
    sub.mkdir()
    _mlp().save(sub / "m.safetensors")
    temps = [p for p in seen if ".ember-tmp-" in p]
    assert temps and all(os.path.dirname(p) == str(sub) for p in temps)
