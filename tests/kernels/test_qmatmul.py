"""Quantized matmul: every ISA and thread count against the int64 reference, bit for bit;
exact integer arithmetic where float32 can show it; accuracy against the float product;
packing round trips; QuantLinear and quantize(model); checkpoints; bad input."""

import numpy as np
import pytest

import ember
import strict_device
from ember import _C, nn, quant

MS = [1, 3, 8, 16, 17, 32, 64, 257]  # 16 and more: the AMX path too, where the CPU has it
KNS = [(33, 17), (64, 16), (100, 40), (130, 33), (300, 37)]
FORMATS = [(8, None), (8, 32), (8, 64), (4, 32), (4, 64), (4, 128)]  # int8 per channel, and in groups
ODD_GROUPS = [(8, 8), (8, 24), (4, 8), (4, 24)]  # multiples of 8 that are not of 16: the kernels' partial vectors
CODEBOOK = [(4, "codebook")]  # the int4 codebook format (tests/kernels/test_qmatmul_codebook.py)


def fmt_id(f):
    if f[1] == "codebook":
        return "int4-codebook"
    return f"int{f[0]}" + (f"-g{f[1]}" if f[1] else "")


@pytest.mark.parametrize("fmt", FORMATS + ODD_GROUPS + CODEBOOK, ids=fmt_id)
@pytest.mark.parametrize("m", MS)
def test_fast_paths_match_the_reference_bit_for_bit(isa, feature_off, rng, fmt, m):
    bits, group = fmt
    form = {"codebook": True} if group == "codebook" else {"group_size": group}
    for k, n in KNS:
        w = rng.standard_normal((n, k)).astype(np.float32) * rng.uniform(0.01, 10)
        x = rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.1, 10)
        b = rng.standard_normal(n).astype(np.float32)
        qw = quant.quantize_weight(w, bits, **form)
        want = qw.matmul(x, b, reference=True)
        for threads in (1, 2, 3):
            ember.set_num_threads(threads)
            out = np.full((m, n), np.nan, np.float32)  # poisoned: every element must be written
            qw.matmul(x, b, out=out)
            np.testing.assert_array_equal(out, want, err_msg=f"K={k} N={n} threads={threads}")
        np.testing.assert_array_equal(qw.matmul(x), qw.matmul(x, reference=True))  # without bias


@pytest.mark.parametrize("fmt", FORMATS, ids=fmt_id)
def test_integer_arithmetic_is_exact(isa, feature_off, rng, fmt):
    # Power-of-two scales and small integers: every step is exact in float32, so the output
    # is exactly sum_k q_x[m, k] * q_w[n, k] * scales, whatever the ISA.
    bits, group = fmt
    m, k, n = 9, 256, 48
    qmax = 127 if bits == 8 else 7
    q_w = rng.integers(-qmax, qmax + 1, (n, k))
    q_w[:, 0] = qmax  # each row (and group) reaches the extreme: scale exactly 1
    if group:
        q_w[:, ::group] = qmax
    q_x = rng.integers(-127, 128, (m, k))
    q_x[:, 0] = 127
    if group:
        q_x[:, ::group] = 127
    qw = quant.quantize_weight((q_w * 0.25).astype(np.float32), bits, group)  # scale 1/4 exactly
    np.testing.assert_array_equal(qw._values(), q_w)
    got = qw.matmul((q_x * 2.0).astype(np.float32))  # activation scale 2 exactly
    np.testing.assert_array_equal(got, (q_x @ q_w.T) * 0.5)


@pytest.mark.parametrize("group", [8, 32, 40, 64])
def test_int4_partial_sums_at_the_extremes(isa, feature_off, group):
    # Every nibble 15 (q = 7) against activations of +-127: the largest partial sums a kernel
    # may keep in 16 bits before widening; they must not saturate.
    k, n = 4 * group, 16
    w = np.full((n, k), 7.0, np.float32)
    for sign in (1.0, -1.0):
        x = np.full((3, k), 127.0 * sign, np.float32)
        x[1, ::2] *= -1  # alternating signs too
        qw = quant.quantize_weight(w, 4, group)
        np.testing.assert_array_equal(qw.matmul(x), qw.matmul(x, reference=True))
        np.testing.assert_array_equal(qw.matmul(x)[0], np.full(n, sign * 127.0 * 7.0 * k, np.float32))


def test_w8a8_accuracy_on_gaussian_data(rng):
    m, k, n = 32, 4096, 256
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    for bits, bound in [(8, 5e-4), (4, 2e-2)]:
        y = quant.quantize_weight(w, bits).matmul(x)
        nmse = np.mean((y - exact) ** 2) / np.mean(exact**2)
        assert nmse <= bound, (bits, nmse)


@pytest.mark.parametrize("bits, group, bound", [(8, None, 0.012), (8, 32, 0.0051), (4, 32, 0.10), (4, 64, 0.12),
                                               (4, 128, 0.13)])
def test_quantize_dequantize_error_on_gaussian_weights(rng, bits, group, bound):
    # Uniform rounding error: RMSE ~ step / sqrt(12) with step = max|w| / 127 (per row) or
    # max|w| / 7 (per group); for unit Gaussians that is ~0.009 (int8) and ~0.08-0.11 (int4).
    # Grouped int8's step is max|w| / 127 per group of 32 (llama.cpp's q8_0: 0.0053), less the
    # scale search's gain (0.0049).
    w = rng.standard_normal((512, 1000)).astype(np.float32)
    qw = quant.quantize_weight(w, bits, group)
    d = qw.dequantize()
    assert d.shape == w.shape and d.dtype == np.float32
    rmse = float(np.sqrt(np.mean((d - w) ** 2)))
    assert rmse <= bound, rmse
    # Every weight is within half a step of its dequantized value (in groups: of a scale at most
    # 28 / 1024 above max|w| / 127, or 4 / 1024 below it, clipping the largest by less than that).
    if (bits, group) == (8, None):
        assert np.all(np.abs(d - w) <= np.abs(w).max(axis=1, keepdims=True) / 127 / 2 * (1 + 1e-5))
    elif bits == 8:
        padded = np.zeros((512, 1024), np.float32)  # K = 1000 in groups of 32: the last one short
        padded[:, :1000] = np.abs(w)
        step = np.repeat(padded.reshape(512, -1, group).max(axis=2) / 127, group, axis=1)[:, :1000]
        assert np.all(np.abs(d - w) <= step / 2 * (1 + 28 / 1024))


def test_packing_and_layout(rng):
    w = rng.standard_normal((20, 37)).astype(np.float32)
    q8 = quant.quantize_weight(w, 8)
    assert q8.data.size == 32 * 40 and q8.scales.size == 32 and q8.colsum.size == 32
    np.testing.assert_array_equal(q8.colsum[:20], q8._values().sum(axis=1))
    q4 = quant.quantize_weight(w, 4, 32)
    assert q4.data.size == 32 * 64 // 2 and q4.scales.size == 32 * 2
    assert q4._values().min() >= -7 and q4._values().max() <= 7
    assert q4.nbytes < q8.nbytes < w.nbytes
    g8 = quant.quantize_weight(w, 8, 32)  # K padded to 64: two groups, 16-bit scales, no colsum
    assert g8.data.dtype == np.uint8 and g8.data.size == 32 * 64 and g8.colsum is None
    assert g8.scales.dtype == np.uint16 and g8.scales.size == 32 * 2 and g8.group_scales().shape == (20, 2)
    assert (g8.data.reshape(2, 16, 16, 4)[:, 10:, :, :] == 128).all()  # padding: q = 0, stored as 128
    zero = quant.quantize_weight(np.zeros((3, 8), np.float32), 8)  # an all-zero row keeps scale 1
    assert (zero.scales == 1).all() and not zero.dequantize().any()


@pytest.fixture(params=["cpu", "strict"])
def quant_device(request):
    """The model-level tests on the CPU and the strict device (the quantized kernels are the
    CPU's; a CUDA device gets its own with the GPU's quantized kernels)."""
    if request.param == "strict":
        strict_device.register()
    previous = ember.get_default_device()
    ember.set_default_device(request.param)
    yield request.param
    ember.set_default_device(previous)


def test_quant_linear_and_quantize_model(rng, quant_device):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    x = rng.standard_normal((800, 64)).astype(np.float32)
    with ember.no_grad():
        logits = model(ember.tensor(x)).cpu().numpy()
    # The float model's own labels, on the inputs it does not decide on a knife edge: the quarter
    # with the widest gap between the two highest scores (int4's error would flip the others at
    # random, and the accuracy measured would be the draw's, not the quantization's).
    top2 = np.sort(logits, axis=1)[:, -2:]
    x = x[np.argsort(top2[:, 1] - top2[:, 0])[-200:]]
    y = logits.argmax(axis=1)[np.argsort(top2[:, 1] - top2[:, 0])[-200:]]
    for bits, group in [(8, None), (8, 32), (4, 32)]:
        qmodel, report = quant.quantize(model, bits=bits, group_size=group, eval_data=(x, y))
        assert isinstance(qmodel[0], quant.QuantLinear) and isinstance(model[0], nn.Linear)  # a copy
        assert report.layers == 2 and report.bytes_after < report.bytes_before / (3 if bits == 8 else 5)
        assert report.group_size == group and ("groups of 32" in str(report)) == (group is not None)
        assert report.metric == "accuracy" and report.before == 1.0 and report.after >= 0.98
        assert report.speedup is not None and report.speedup > 0 and "accuracy" in str(report)
        assert len(report.ratios) == 21 and report.speedup == np.median(report.ratios)
        assert "alternating rounds" in str(report)
        assert ("too small for the bytes saved" in str(report)) == (report.speedup < 1.0)
        with ember.no_grad():
            got = qmodel(ember.tensor(x)).cpu().numpy()
        # The same integers on the host: the float model's weights quantized here, bit for bit.
        first, last = (quant.quantize_weight(model[i].weight, bits, group) for i in (0, 2))
        h = np.maximum(first.matmul(x, model[0].bias.detach().cpu().numpy()), 0)
        np.testing.assert_array_equal(got, last.matmul(h, model[2].bias.detach().cpu().numpy()))
        assert "bits=" in repr(qmodel[0])
    out = qmodel(ember.tensor(x).requires_grad_()).sum()
    with pytest.raises(RuntimeError, match="QuantLinear is for inference only"):
        out.backward()
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        quant.quantize(nn.Sequential(nn.ReLU()))


def test_quantized_models_round_trip_through_checkpoints(rng, tmp_path, quant_device):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 5))
    x = ember.tensor(rng.standard_normal((7, 40)).astype(np.float32))
    for bits, group in [(8, 32), (8, None), (4, None)]:  # int4 last: its file is used below
        qmodel, _ = quant.quantize(model, bits=bits, group_size=group)
        path = qmodel.save(tmp_path / f"q{bits}-{group}.safetensors", config={"bits": bits})
        arrays, _ = ember.checkpoint.read(path)
        assert arrays["model.0.weight_data"].dtype == (np.int8 if (bits, group) == (8, None) else np.uint8)
        assert arrays["model.0.weight_scales"].dtype == (np.uint8 if group else np.float32)  # 16-bit scales as bytes
        fresh = quant.quantized_structure(nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 5)), bits=bits,
                                          group_size=group)
        fresh.load(path)
        with ember.no_grad():
            np.testing.assert_array_equal(fresh(x).cpu().numpy(), qmodel(x).cpu().numpy())
    # Into a float model, or one quantized another way: the file says what it holds.
    with pytest.raises(ValueError, match=r"holds a quantized model \(int4 layers: 0, 2\); load it into "
                                         r"ember.quant.quantized_structure"):
        nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 5)).load(path)
    other = quant.quantized_structure(nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 5)), bits=8)
    with pytest.raises(ValueError, match=r"quantized layers differ from the model's: 0: file \{'bits': 4, "
                                         r"'group_size': 32\}, model \{'bits': 8, 'group_size': None\}"):
        other.load(path)
    # Scales damaged on disk are refused when the layer runs.
    with ember.no_grad():
        fresh[0].weight_scales[0] = np.nan
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        fresh(x)


def test_bad_input(rng):
    w = rng.standard_normal((16, 40)).astype(np.float32)
    q8, q4 = quant.quantize_weight(w, 8), quant.quantize_weight(w, 4)
    with pytest.raises(ValueError, match="quantized for K=40"):
        q8.matmul(np.zeros((2, 41), np.float32))
    with pytest.raises(TypeError, match="input must be a float32 array, got float64"):
        q4.matmul(np.zeros((2, 40)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        q8.matmul(np.full((1, 40), np.inf, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        q4.matmul(np.full((3, 40), np.nan, np.float32), reference=True)
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        quant.quantize_weight(w, bits=2)
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        quant.quantize_weight(w, bits=4, group_size=20)
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        quant.quantize_weight(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="must be a 2-D"):
        quant.quantize_weight(np.zeros(5, np.float32))
    for bad in (0.0, np.nan, np.inf, -1.0):
        scales = q8.scales.copy()
        scales[3] = bad
        with pytest.raises(ValueError, match="scales must be finite and > 0"):
            quant.QuantizedWeight(8, (16, 40), q8.data, scales, q8.colsum)
    with pytest.raises(ValueError, match="packed for another shape or group size"):
        quant.QuantizedWeight(4, (16, 40), q4.data, q4.scales, group_size=64)
    with pytest.raises(TypeError, match="data must be a numpy array of int8"):
        quant.QuantizedWeight(8, (16, 40), q8.data.view(np.uint8), q8.scales, q8.colsum)
    # The kernels' own checks (what a caller of ember._C meets).
    out = np.empty((2, 16), np.float32)
    x = np.zeros((2, 40), np.float32)
    with pytest.raises(ValueError, match="has 600 elements; the packed layout of this shape needs 640"):
        _C.qmatmul_int8(x, q8.data[:600], q8.scales, q8.colsum, 16, 40, None, out)
    with pytest.raises(ValueError, match=r"out has shape \(2, 15\), expected \(2, 16\)"):
        _C.qmatmul_int8(x, q8.data, q8.scales, q8.colsum, 16, 40, None, out[:, :15])
    with pytest.raises(ValueError, match="out must not share memory with input"):
        big = np.zeros((2, 56), np.float32)
        _C.qmatmul_int8(big[:, :40], q8.data, q8.scales, q8.colsum, 16, 40, None, big[:, 40:])
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        _C.qmatmul_int4(x, q4.data, q4.scales, 16, 40, 12, None, out)
    with pytest.raises(ValueError, match="K <= 65536"):
        _C.qmatmul_int8(x, q8.data, q8.scales, q8.colsum, 16, 70000, None, out)


def e6m10_at_least(d):
    """The bits of the smallest e6m10 scale at or above each d > 0 (2^-31 below it)."""
    mant, exp = np.frexp(d)  # d = mant * 2^exp, mant in [0.5, 1)
    m = np.ceil((mant * 2 - 1) * 1024)  # exact: a power-of-two scaling
    e = exp - 1 + (m == 1024)
    m = np.where(m == 1024, 0, m)
    return np.where(e < -31, 0, (e + 31) * 1024 + m).astype(np.int64)


def numpy_quantize_pack_int8g(w, g):
    """Grouped int8's packer contract: per group the e6m10 scale of least squared error (summed in
    order, the first of equals) among the 32 grid points from 4 below max|w| / 127 rounded up to
    27 above, values round_half_even(w * (1 / scale)) clipped to +-127."""
    n, k = w.shape
    np16, kp = -(-n // 16) * 16, -(-k // g) * g
    wp = np.zeros((np16, kp))
    wp[:n, :k] = w
    wg = wp.reshape(np16, kp // g, g)
    amax = np.abs(wg).max(axis=2)
    up = e6m10_at_least(np.where(amax > 0, amax / 127, 1.0))
    cand = np.clip(up[..., None] + np.arange(-4, 28), 0, 65535)  # clipped ends repeat: never strictly better
    scale = quant.e6m10_to_float(cand.astype(np.uint16)).astype(np.float64)  # (N, groups, 32)
    q = np.clip(np.rint(wg[:, :, None, :] * (1.0 / scale)[..., None]), -127, 127)
    err = np.cumsum((q * scale[..., None] - wg[:, :, None, :]) ** 2, axis=3)[..., -1]  # summed in order
    best = np.take_along_axis(cand, err.argmin(axis=2)[..., None], axis=2)[..., 0]
    best = np.where(amax > 0, best, 31 << 10)  # an all-zero group (and padding): scale 1
    s64 = quant.e6m10_to_float(best.astype(np.uint16)).astype(np.float64)
    q = (np.clip(np.rint(wg * (1.0 / s64)[..., None]), -127, 127) + 128).astype(np.uint8).reshape(np16, kp)
    data = np.ascontiguousarray(q.reshape(np16 // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3)).reshape(-1)
    scales = np.ascontiguousarray(best.reshape(np16 // 16, 16, kp // g).transpose(0, 2, 1)).reshape(-1)
    return data, scales.astype(np.uint16), None


def numpy_quantize_pack(w, bits, group_size=32):
    """The packer's contract in NumPy (float64 arithmetic, round half to even): the oracle of the
    native one. Returns (data, scales, colsum or None)."""
    n, k = w.shape
    w = w.astype(np.float64)
    np16 = -(-n // 16) * 16
    if bits == 8 and group_size is not None:
        return numpy_quantize_pack_int8g(w, group_size)
    if bits == 8:
        kp = -(-k // 4) * 4
        amax = np.abs(w).max(axis=1)
        scale = np.where(amax > 0, amax / 127, 1.0).astype(np.float32)
        q = np.zeros((np16, kp), np.int8)
        q[:n, :k] = np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -127, 127)
        scales = np.ones(np16, np.float32)
        scales[:n] = scale
        data = np.ascontiguousarray(q.reshape(np16 // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3)).reshape(-1)
        return data, scales, q.astype(np.int32).sum(axis=1)
    g = group_size
    kp = -(-k // g) * g
    groups = kp // g
    wp = np.zeros((np16, kp))
    wp[:n, :k] = w
    wg = wp.reshape(np16, groups, g)
    amax = np.abs(wg).max(axis=2)
    best_scale, best_err = None, None
    for shrink in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75):
        scale = np.where(amax > 0, amax * shrink / 7, 1.0).astype(np.float32)
        s64 = scale.astype(np.float64)[..., None]
        err = ((np.clip(np.rint(wg / s64), -7, 7) * s64 - wg) ** 2).sum(axis=2)
        if best_scale is None:
            best_scale, best_err = scale, err
        else:
            better = err < best_err
            best_scale, best_err = np.where(better, scale, best_scale), np.where(better, err, best_err)
    q = np.clip(np.rint(wg / best_scale.astype(np.float64)[..., None]), -7, 7).astype(np.int8).reshape(np16, kp)
    u = (q + 8).astype(np.uint8).reshape(np16 // 16, 16, kp // 8, 2, 4)
    data = np.ascontiguousarray((u[:, :, :, 0, :] | (u[:, :, :, 1, :] << 4)).transpose(0, 2, 1, 3)).reshape(-1)
    scales = np.ascontiguousarray(best_scale.reshape(np16 // 16, 16, groups).transpose(0, 2, 1)).reshape(-1)
    return data, scales, None


@pytest.mark.parametrize("fmt", FORMATS + ODD_GROUPS, ids=fmt_id)
def test_the_native_packer_equals_its_numpy_contract(rng, fmt):
    """Sums of squared errors can tie between clipping levels only within rounding, which both
    break the same way here: the packed bytes and scales agree exactly."""
    bits, group = fmt
    for n, k in [(1, 1), (3, 7), (5, 40), (16, 64), (33, 100), (70, 257)]:
        for scale in (0.01, 1.0, 300.0):
            w = (rng.standard_normal((n, k)) * scale).astype(np.float32)
            w[0, : min(k, 3)] = [5.0, -0.0, 0.0][: min(k, 3)]
            if n > 2:
                w[2] = 0.0  # an all-zero row keeps scale 1
            qw = quant.quantize_weight(w, bits, group)
            data, scales, colsum = numpy_quantize_pack(w, bits, group if bits == 8 else group or 32)
            np.testing.assert_array_equal(qw.data, data)
            np.testing.assert_array_equal(qw.scales, scales)
            if colsum is not None:
                np.testing.assert_array_equal(qw.colsum, colsum)


@pytest.mark.parametrize("bits, group", [(8, None), (4, 8), (4, 32)])
def test_weights_too_small_for_a_normal_scale(bits, group):
    """Finite weights so small that max|w| / 127 (or / 7) underflows float32 still get a scale
    > 0 (the smallest positive float), so the packed weight is valid and reads back as ~w."""
    w = np.full((3, 40), 1e-45, np.float32)
    w[1, 3], w[2] = -3e-44, 0.0
    qw = quant.quantize_weight(w, bits, group)
    assert (qw.scales > 0).all()
    back = qw.dequantize()
    assert back[1, 3] == w[1, 3] and (back[2] == 0).all()
    assert np.abs(back - w).max() <= 2e-45
    again = quant.QuantizedWeight(bits, w.shape, qw.data, qw.scales, qw.colsum, qw.group_size)  # checked
    np.testing.assert_array_equal(again.matmul(np.ones((2, 40), np.float32)), qw.matmul(np.ones((2, 40), np.float32)))


def test_the_native_packer_refuses_bad_arguments():
    w = np.ones((4, 8), np.float32)
    d, s, c = np.empty(16 * 8, np.int8), np.empty(16, np.float32), np.empty(16, np.int32)
    with pytest.raises(ValueError, match="bits must be 8 or 4, got 3"):
        _C.quantize_pack(w, 3, 0, d, s, c)
    with pytest.raises(ValueError, match="group_size must be a multiple of 8"):
        _C.quantize_pack(w, 4, 12, d, s, None)
    with pytest.raises(ValueError, match="out_data has 10 elements"):
        _C.quantize_pack(w, 8, 0, d[:10], s, c)
    with pytest.raises(ValueError, match="out_colsum must be None for int4 weights"):
        _C.quantize_pack(w, 4, 8, np.empty(16 * 8 // 2, np.uint8), np.empty(16, np.float32), c)
    bad = w.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values \(row 1, column 2\)"):
        _C.quantize_pack(bad, 8, 0, d, s, c)
    with pytest.raises(ValueError, match="must not share memory|overlap"):
        _C.quantize_pack(w, 8, 0, d, s, s.view(np.int32))


def test_quant_linear_and_scale_helpers_name_bad_arguments(rng):
    with pytest.raises(ValueError, match=r"QuantLinear: in_features must be in \[1, 65536\], got -5"):
        quant.QuantLinear(-5, 4, bits=8, group_size=32)
    with pytest.raises(ValueError, match=r"QuantLinear: in_features must be in \[1, 65536\], got 70000"):
        quant.QuantLinear(70000, 16, bits=8)
    with pytest.raises(ValueError, match=r"QuantLinear: out_features must be >= 1, got 0"):
        quant.QuantLinear(8, 0)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=r"bias must have shape \(16,\) like the weight's outputs, got \(1,\)"):
        quant.QuantLinear.from_weight(w, ember.ones(1))  # never broadcast to every output
    with pytest.raises(TypeError, match=r"bias must hold numbers"):
        quant.QuantLinear.from_weight(w, np.array(["a"] * 16))
    q = quant.QuantLinear.from_weight(w, np.arange(16.0))  # a NumPy bias, as a NumPy weight
    np.testing.assert_array_equal(q.bias.numpy(), np.arange(16, dtype=np.float32))
    assert quant.e6m10_to_float(31 << 10) == 1.0
    for bits, error in [([31744 + 65536], ValueError), ([-1], ValueError), ([31744.7], TypeError)]:
        with pytest.raises(error, match=r"e6m10_to_float: bits must"):
            quant.e6m10_to_float(bits)


def _state_bytes(model):
    return sum(t.detach().cpu().numpy().nbytes for t in model.state_dict().values())


class _Twice(nn.Module):
    """One Linear reached under two names (``b = a``)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 64, bias=False)
        self.b = self.a

    def forward(self, x):
        return self.b(self.a(x))


class _SharedWeight(nn.Module):
    """Two Linears with one weight Parameter and their own biases."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x))


class _TiedHead(nn.Module):
    """An embedding whose weight a Linear output head also uses (a tied language-model head)."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(50, 32), nn.Linear(32, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_quantize_keeps_shared_weights_shared_and_counts_each_tensor_once(rng, tmp_path):
    ember.manual_seed(0)
    x = ember.tensor(rng.standard_normal((5, 64)).astype(np.float32))
    twice = _Twice()
    qmodel, report = quant.quantize(twice, bits=4)
    packed = quant.quantize_weight(twice.a.weight, 4).nbytes
    assert qmodel.a is qmodel.b and report.layers == 1 and "quantized 1 Linear layer(s)" in str(report)
    assert (report.bytes_before, report.bytes_after) == (64 * 64 * 4, packed)
    assert _state_bytes(twice) - _state_bytes(qmodel) == report.bytes_before - report.bytes_after

    shared = _SharedWeight()
    qmodel, report = quant.quantize(shared, bits=4)
    assert qmodel.a.weight_data is qmodel.b.weight_data and qmodel.a.weight_scales is qmodel.b.weight_scales
    assert qmodel.a.bias is not qmodel.b.bias and report.layers == 2
    assert (report.bytes_before, report.bytes_after) == (64 * 64 * 4, packed)
    assert _state_bytes(shared) - _state_bytes(qmodel) == report.bytes_before - report.bytes_after
    w = quant.quantize_weight(shared.a.weight, 4)
    h = w.matmul(x.numpy(), shared.a.bias.detach().numpy())
    with ember.no_grad():
        got = qmodel(x).numpy()
    np.testing.assert_array_equal(got, w.matmul(h, shared.b.bias.detach().numpy()))
    path = qmodel.save(tmp_path / "shared.safetensors")
    again = quant.quantized_structure(_SharedWeight(), bits=4)  # the structure shares as the file does
    assert again.a.weight_data is again.b.weight_data
    again.load(path)
    with ember.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), got)


def test_a_weight_tied_to_a_float_embedding_is_quantized_for_the_head_and_counted_twice(rng):
    ember.manual_seed(0)
    model = _TiedHead()
    qmodel, report = quant.quantize(model, bits=8)
    assert isinstance(qmodel.head, quant.QuantLinear) and qmodel.emb.weight.shape == (50, 32)
    float_bytes = 50 * 32 * 4
    assert report.bytes_before == float_bytes
    assert report.bytes_after == float_bytes + qmodel.head.qweight.nbytes  # the embedding keeps its float weight
    assert _state_bytes(qmodel) - _state_bytes(model) == report.bytes_after - report.bytes_before
    assert report.compression < 1
    assert "kept in float32 as well: emb.weight (another module uses it too, as a tied embedding does)" in str(report)
    ids = rng.integers(0, 50, (3, 4))
    with ember.no_grad():
        np.testing.assert_array_equal(qmodel.emb(ids).numpy(), model.emb(ids).numpy())


def test_quantize_scores_a_single_logit_as_a_binary_classifier(rng):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    x = rng.standard_normal((300, 8)).astype(np.float32)
    with ember.no_grad():
        logit = model(ember.tensor(x)).numpy()
    y = (logit[:, 0] > 0).astype(np.int64)
    assert 0 < y.mean() < 1
    _, report = quant.quantize(model, bits=8, eval_data=(x, y))
    assert report.metric == "accuracy" and report.before == 1.0
    assert quant.quantize(model, bits=8, eval_data=(x, 1 - y))[1].before == 0.0
    assert quant.quantize(model, bits=8, eval_data=(x, y[:, None]))[1].before == 1.0  # Keras's (N, 1) labels
    counts = np.full(300, 2)  # integers that are not 0/1 labels: values to regress
    _, report = quant.quantize(model, bits=8, eval_data=(x, counts))
    assert report.metric == "mse" and report.before == pytest.approx(np.mean((logit[:, 0] - 2) ** 2), rel=1e-6)


def test_codebook_refuses_a_group_size():
    message = r"group_size does not apply to codebook=True .*got group_size=64"
    with pytest.raises(ValueError, match=message):
        quant.quantize(nn.Sequential(nn.Linear(64, 8)), bits=4, codebook=True, group_size=64)
    with pytest.raises(ValueError, match=message):
        quant.quantize_weight(np.ones((8, 64), np.float32), 4, group_size=64, codebook=True)
    with pytest.raises(ValueError, match=message):
        quant.QuantLinear(64, 8, bits=4, group_size=64, codebook=True)
