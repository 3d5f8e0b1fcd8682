"""int8 in groups (its fast paths against the reference, the packer against its NumPy contract
and checkpoints are in test_qmatmul.py's tables): accuracy and size against llama.cpp's q8_0 rule,
the 16-bit scale format, the integer sums at their extremes, bad input."""

import numpy as np
import pytest

import ember
from ember import _C, nn, quant


def q8_0(a):
    """llama.cpp's q8_0 in NumPy, for weights or activations (..., K), K a multiple of 32: per 32
    values d = max|a| / 127 stored as float16, q = round(a / d), dequantized q * float16(d)."""
    g = a.reshape(a.shape[:-1] + (-1, 32)).astype(np.float32)
    d = np.abs(g).max(axis=-1, keepdims=True) / 127
    q = np.clip(np.rint(g / np.where(d > 0, d, 1)), -127, 127)
    return (q * d.astype(np.float16).astype(np.float32)).reshape(a.shape)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_more_accurate_than_q8_0_at_its_size(rng):
    n, k = 256, 4096
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((32, k)).astype(np.float32)
    qw = quant.quantize_weight(w, 8, 32)
    assert qw.nbytes * 8 / (n * k) == 8.5  # a byte per weight and 16 bits per 32: q8_0's size
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    ours_w, theirs_w = rel(qw.dequantize(), w), rel(q8_0(w), w)
    ours_y = rel(qw.matmul(x), exact)
    theirs_y = rel(q8_0(x).astype(np.float64) @ q8_0(w).T.astype(np.float64), exact)
    # Measured over 40 seeds: weights 0.909-0.911x q8_0's error; products (32 rows, where the
    # activations' rounding adds its own noise) 0.935-0.968x.
    assert ours_w < 0.93 * theirs_w, (ours_w, theirs_w)
    assert ours_y < 0.99 * theirs_y, (ours_y, theirs_y)
    # One scale per channel instead (8 bits per weight): much worse on the same weights.
    assert rel(quant.quantize_weight(w, 8).matmul(x), exact) > 1.5 * ours_y


def test_e6m10_scales():
    bits = np.arange(2**16, dtype=np.uint16)
    e, m = bits.astype(np.int64) >> 10, bits.astype(np.int64) & 1023
    want = 2.0 ** (e - 31) * (1 + m / 1024)
    np.testing.assert_array_equal(quant.e6m10_to_float(bits), want.astype(np.float32))
    assert (np.diff(quant.e6m10_to_float(bits)) > 0).all()  # the bits order the values


@pytest.mark.parametrize("magnitude", [1e-6, 1e-3, 1.0, 1e4, 1e9, 1e11])
def test_every_magnitude_keeps_its_precision(rng, magnitude):
    # fp16 scales (q8_0's) lose precision below max|w| = 7.8e-3 and overflow above 8.3e6; e6m10's
    # exponent covers max|w| from 6e-8 to 1.09e12 at full precision.
    w = (rng.standard_normal((16, 256)) * magnitude / 4).astype(np.float32)
    qw = quant.quantize_weight(w, 8, 32)
    assert rel(qw.dequantize(), w) < 6e-3
    x = rng.standard_normal((2, 256)).astype(np.float32)
    np.testing.assert_array_equal(qw.matmul(x), qw.matmul(x, reference=True))


def test_tiny_and_huge_weights():
    tiny = np.full((16, 32), 1e-12, np.float32)  # below the smallest scale's reach: zeros
    assert not quant.quantize_weight(tiny, 8, 32).dequantize().any()
    huge = np.ones((3, 40), np.float32)
    huge[2, 33] = 2e12
    with pytest.raises(ValueError, match=r"\(row 2, column 33\) is beyond grouped int8's range"):
        quant.quantize_weight(huge, 8, 32)


@pytest.mark.parametrize("group", [8, 32, 128])
def test_sums_at_the_extremes(isa, feature_off, group):
    # Every weight +-127 (stored 255 or 1) against activations of +-127: the largest sums a kernel
    # forms, the AVX2 pairs included (2 * 127 * 127 fits in int16).
    k, n = 4 * group, 32
    for w_sign in (1.0, -1.0):
        w = np.full((n, k), 127.0 * w_sign, np.float32)
        qw = quant.quantize_weight(w, 8, group)
        assert (qw.group_scales() == 1.0).all()
        for x_sign in (1.0, -1.0):
            x = np.full((3, k), 127.0 * x_sign, np.float32)
            x[1, ::2] *= -1  # alternating signs: those sums cancel
            got = qw.matmul(x)
            np.testing.assert_array_equal(got, qw.matmul(x, reference=True))
            np.testing.assert_array_equal(got[0], np.full(n, w_sign * x_sign * 127.0 * 127.0 * k, np.float32))
            np.testing.assert_array_equal(got[1], np.zeros(n, np.float32))


def test_bad_input(rng, tmp_path):
    w = rng.standard_normal((16, 40)).astype(np.float32)
    qw = quant.quantize_weight(w, 8, 32)
    data = qw.data.copy()
    data[5] = 0  # q = -128
    with pytest.raises(ValueError, match=r"int8 weights must lie in \[-127, 127\] \(bytes 1 to 255\)"):
        quant.QuantizedWeight(8, (16, 40), data, qw.scales, group_size=32)
    with pytest.raises(TypeError, match="scales must be a numpy array of uint16, got float32"):
        quant.QuantizedWeight(8, (16, 40), qw.data, qw.scales.astype(np.float32), group_size=32)
    with pytest.raises(ValueError, match="colsum belongs to int8 weights with one scale per channel only"):
        quant.QuantizedWeight(8, (16, 40), qw.data, qw.scales, np.zeros(16, np.int32), group_size=32)
    with pytest.raises(ValueError, match="packed for another shape or group size"):
        quant.QuantizedWeight(8, (16, 40), qw.data, qw.scales, group_size=8)
    with pytest.raises(ValueError, match=r"group_size must be a multiple of 8 .* or None"):
        quant.quantize_weight(w, 8, 12)
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        quant.QuantLinear(40, 16, bits=8, group_size=0)
    x, out = np.zeros((2, 40), np.float32), np.empty((2, 16), np.float32)
    with pytest.raises(ValueError, match="has 300 elements; the packed layout of this shape needs 1024"):
        _C.qmatmul_int8g(x, qw.data[:300], qw.scales, 16, 40, 32, None, out)
    with pytest.raises(TypeError, match="scales"):
        _C.qmatmul_int8g(x, qw.data, qw.scales.view(np.int16), 16, 40, 32, None, out)
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        _C.qmatmul_int8g_ref(x, qw.data, qw.scales, 16, 40, 20, None, out)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _C.qmatmul_int8g(np.full((2, 40), np.nan, np.float32), qw.data, qw.scales, 16, 40, 32, None, out)
    with pytest.raises(ValueError, match="out_scales has 3 elements"):
        _C.quantize_pack_int8g(w, 32, np.empty(1024, np.uint8), np.empty(3, np.uint16))
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        _C.quantize_pack_int8g(w, 4, np.empty(1024, np.uint8), np.empty(32, np.uint16))
    # A checkpoint whose values were damaged on disk is refused at load, before anything changes.
    model = nn.Sequential(nn.Linear(40, 16))
    qmodel, _ = quant.quantize(model, bits=8, group_size=32)
    path = qmodel.save(tmp_path / "g.safetensors")
    arrays, meta = ember.checkpoint.read(path)
    arrays["model.0.weight_data"][7] = 0
    bad = tmp_path / "bad.safetensors"
    from safetensors.numpy import save_file
    save_file(arrays, str(bad), metadata=meta)
    fresh = quant.quantized_structure(nn.Sequential(nn.Linear(40, 16)), bits=8, group_size=32)
    before = fresh[0].weight_data.numpy().copy()
    with pytest.raises(ValueError, match=r"weight_data: int8 weights must lie in \[-127, 127\]"):
        fresh.load(bad)
    np.testing.assert_array_equal(fresh[0].weight_data.numpy(), before)
