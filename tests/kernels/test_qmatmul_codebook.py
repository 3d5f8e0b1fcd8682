"""The int4 codebook format (its fast paths against the reference are in test_qmatmul.py's table):
the integer arithmetic and the packed layout against a NumPy packing of known integers;
accuracy and size against int4 in groups of 32; QuantLinear, quantize(model), checkpoints; bad
input (the command line: tests/test_cli_gpt.py; ONNX export's refusal: tests/test_onnx.py)."""

import numpy as np
import pytest

import ember
from ember import _C, _quant_codebook, nn, quant


def pack(index, sub, d, n, k):
    """data and scales of an (n, k) weight d[n, s] * sub[n, k // 16] * codebook[index[n, k]], packed
    in NumPy as qmatmul.h documents (k a multiple of 256, n of 16)."""
    data = np.zeros((n // 16, k // 8, 16, 4), np.uint8)
    idx = index.reshape(n // 16, 16, k // 8, 2, 4).transpose(0, 2, 1, 3, 4)  # block, octet, ch, half, lane
    data[...] = idx[:, :, :, 0] | idx[:, :, :, 1] << 4
    scales = np.zeros((n // 16, k // 256, 256), np.uint8)
    scales[:, :, :64] = d.astype(np.float32).reshape(n // 16, 16, k // 256).transpose(0, 2, 1).copy().view(np.uint8)
    u = (sub + 32).reshape(n // 16, 16, k // 256, 4, 4).transpose(0, 2, 3, 4, 1)  # block, super, quad, i, ch
    rows = np.stack([u[:, :, :, 0] | (u[:, :, :, 3] & 3) << 6, u[:, :, :, 1] | (u[:, :, :, 3] >> 2 & 3) << 6,
                     u[:, :, :, 2] | (u[:, :, :, 3] >> 4) << 6], axis=3)  # block, super, quad, 3, ch
    scales[:, :, 64:] = rows.reshape(n // 16, k // 256, 192)
    return data.reshape(-1), scales.reshape(-1)


def test_integer_arithmetic_and_layout_are_exact(isa, feature_off, rng):
    # Known indices and 6-bit scales, float scales that are powers of two and activations whose
    # super-blocks each reach 127 (activation scale 1): every step is exact, so the output is
    # the int64 sum times the float scale, whatever the ISA.
    m, k, n = 40, 512, 32  # 16 rows and more: the AMX path too, where the CPU has it
    index = rng.integers(0, 16, (n, k))
    sub = rng.integers(-32, 32, (n, k // 16))
    sub[:, :2] = [-32, 31]  # the ends of the 6-bit range
    d = np.full((n, k // 256), 0.25)
    data, scales = pack(index, sub, d, n, k)
    qw = quant.QuantizedWeight(4, (n, k), data, scales, codebook=True)
    weight = _quant_codebook.CODEBOOK[index].astype(np.int64) * np.repeat(sub, 16, axis=1)
    np.testing.assert_array_equal(qw.dequantize(), (weight * 0.25).astype(np.float32))
    q_x = rng.integers(-127, 128, (m, k))
    q_x[:, ::256] = 127
    want = (q_x @ weight.T) * 0.25
    assert np.abs(want).max() < 2**24  # exact in float32
    for threads in (1, 2):
        ember.set_num_threads(threads)
        for rows in (5, 40):
            np.testing.assert_array_equal(qw.matmul(q_x[:rows].astype(np.float32)), want[:rows])


def test_accuracy_and_size_against_int4_in_groups_of_32(rng):
    n, k = 256, 4096
    w = rng.standard_normal((n, k)).astype(np.float32)
    cb, g32 = quant.quantize_weight(w, 4, codebook=True), quant.quantize_weight(w, 4, 32)
    assert cb.nbytes * 8 / w.size == 4.5 and g32.nbytes * 8 / w.size == 5.0
    # A last, partial super-block keeps whole scales (1 byte per 16 weights) but no padded indices.
    assert quant.quantize_weight(w[:, :128], 4, codebook=True).nbytes * 8 / (n * 128) == 5.0
    assert quant.quantize_weight(w[:, :384], 4, codebook=True).nbytes * 8 / (n * 384) == 4 + 2 / 3
    err = {name: float(np.linalg.norm(q.dequantize() - w) / np.linalg.norm(w)) for name, q in [("cb", cb),
                                                                                                ("g32", g32)]}
    # 0.0644 and 0.092 when measured; llama.cpp's q4_K (4.5 bits) gives 0.072 on such weights.
    assert err["cb"] < 0.066 and err["cb"] < 0.75 * err["g32"], err
    x = rng.standard_normal((4, k)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    rel = np.linalg.norm(cb.matmul(x) - exact) / np.linalg.norm(exact)
    assert rel < 0.07, rel  # the activations' int8 rounding adds little
    # Scaled weights give scaled results; zero rows give zeros.
    w[:3] = 0
    scaled = quant.quantize_weight(w * 2**-20, 4, codebook=True).dequantize()
    np.testing.assert_allclose(scaled * 2**20, quant.quantize_weight(w, 4, codebook=True).dequantize(), rtol=1e-6)
    assert not scaled[:3].any()


def test_model_level_checkpoints_and_damage(rng, tmp_path):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 40), nn.ReLU(), nn.Linear(40, 5))
    x = rng.standard_normal((7, 300)).astype(np.float32)
    qmodel, report = quant.quantize(model, bits=4, codebook=True, eval_data=(x, np.zeros(7, np.int64)))
    assert report.codebook and "codebook, 4.5 bits per weight" in str(report)
    assert "codebook=True" in repr(qmodel[0]) and qmodel[0].group_size is None
    with ember.no_grad():
        got = qmodel(ember.tensor(x)).numpy()
    first, last = (quant.quantize_weight(model[i].weight, 4, codebook=True) for i in (0, 2))
    h = np.maximum(first.matmul(x, model[0].bias.detach().numpy()), 0)
    np.testing.assert_array_equal(got, last.matmul(h, model[2].bias.detach().numpy()))
    path = qmodel.save(tmp_path / "cb.safetensors")
    fresh = quant.quantized_structure(nn.Sequential(nn.Linear(300, 40), nn.ReLU(), nn.Linear(40, 5)), bits=4,
                                      codebook=True)
    fresh.load(path)
    np.testing.assert_array_equal(ember.load_model(path)(ember.tensor(x)).numpy(), got)
    with ember.no_grad():
        np.testing.assert_array_equal(fresh(ember.tensor(x)).numpy(), got)
    other = quant.quantized_structure(nn.Sequential(nn.Linear(300, 40), nn.ReLU(), nn.Linear(40, 5)), bits=4)
    with pytest.raises(ValueError, match=r"0: file \{'bits': 4, 'group_size': None, 'codebook': True\}, model "
                                         r"\{'bits': 4, 'group_size': 32\}"):
        other.load(path)
    # A float scale damaged on disk is refused at load, naming the array.
    arrays, meta = ember.checkpoint.read(path)
    bad = arrays["model.0.weight_scales"].copy()
    bad[:4] = np.frombuffer(np.float32(-1.0).tobytes(), np.uint8)
    arrays["model.0.weight_scales"] = bad
    damaged = tmp_path / "damaged.safetensors"
    from safetensors.numpy import save_file
    save_file(arrays, str(damaged), metadata=meta)
    with pytest.raises(ValueError, match=r"weight_scales: the float scales must be finite and >= 0, found \[-1.0\]"):
        fresh.load(damaged)


def test_bad_input(rng):
    w = rng.standard_normal((16, 40)).astype(np.float32)
    qw = quant.quantize_weight(w, 4, codebook=True)
    with pytest.raises(ValueError, match="codebook=True is an int4 format: bits must be 4, got 8"):
        quant.quantize_weight(w, 8, codebook=True)
    with pytest.raises(TypeError, match="codebook must be True or False, got 'yes'"):
        quant.quantize_weight(w, 4, codebook="yes")
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        quant.quantize_weight(np.full((2, 3), np.inf, np.float32), 4, codebook=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        qw.matmul(np.full((2, 40), np.nan, np.float32))
    with pytest.raises(ValueError, match="quantized for K=40"):
        qw.matmul(np.zeros((2, 41), np.float32))
    with pytest.raises(ValueError, match="scales must be C-contiguous with 256 elements"):
        quant.QuantizedWeight(4, (16, 40), qw.data, qw.scales[:200], codebook=True)
    with pytest.raises(TypeError, match="scales must be a numpy array of uint8, got float32"):
        quant.QuantizedWeight(4, (16, 40), qw.data, qw.scales.view(np.float32), codebook=True)
    nan = qw.scales.copy()
    nan[4:8] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    with pytest.raises(ValueError, match="the float scales must be finite and >= 0"):
        quant.QuantizedWeight(4, (16, 40), qw.data, nan, codebook=True)
    with pytest.raises(ValueError, match="no integer values apart from its scales"):
        qw._values()
    # The kernels' and the packer's own checks (what a caller of ember._C meets).
    out = np.empty((2, 16), np.float32)
    x = np.zeros((2, 40), np.float32)
    with pytest.raises(ValueError, match="scales has 255 elements; the packed layout of this shape needs 256"):
        _C.qmatmul_int4cb(x, qw.data, qw.scales[:255], 16, 40, None, out)
    with pytest.raises(ValueError, match="out_data has 10 elements"):
        _C.quantize_pack_cb(w, np.empty(10, np.uint8), np.empty(256, np.uint8))
    with pytest.raises(ValueError, match="K <= 65536"):
        _C.qmatmul_int4cb(x, qw.data, qw.scales, 16, 70000, None, out)
