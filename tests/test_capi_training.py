"""The C API's training kernels through ctypes: softmax cross-entropy (every target kind,
weights, label smoothing, ignore_index, each reduction; forward and backward) against
ember.kernels.cross_entropy, and the Adam / SGD steps against ember._C's, bit for bit where
the arithmetic is the same (the mean's sum of rows to rounding: NumPy sums pairwise); bad
arguments named."""

import ctypes
import time

import numpy as np
import pytest
from capi_build import library

import ember
from ember.kernels import cross_entropy

OK, INVALID = 0, 1
NONE, MEAN, SUM = 0, 1, 2
REDUCTIONS = {"none": NONE, "mean": MEAN, "sum": SUM}
P = ctypes.c_void_p


class XentArgs(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("classes", ctypes.c_int64), ("target", P), ("target_probs", P),
                ("weight", P), ("label_smoothing", ctypes.c_float), ("ignore_index", ctypes.c_int64),
                ("reduction", ctypes.c_int)]


class AdamHyper(ctypes.Structure):
    _fields_ = [(f, ctypes.c_float) for f in ("lr", "beta1", "beta2", "eps", "weight_decay")] + [
        ("decoupled", ctypes.c_int), ("maximize", ctypes.c_int)]


class AdamTensor(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("param", P), ("grad", P), ("exp_avg", P), ("exp_avg_sq", P),
                ("max_exp_avg_sq", P), ("step", ctypes.c_int64)]


class SgdHyper(ctypes.Structure):
    _fields_ = [(f, ctypes.c_float) for f in ("lr", "momentum", "dampening", "weight_decay")] + [
        ("nesterov", ctypes.c_int), ("maximize", ctypes.c_int), ("first", ctypes.c_int)]


class SgdTensor(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("param", P), ("grad", P), ("momentum_buffer", P)]


@pytest.fixture(scope="module")
def lib():
    return library()


@pytest.fixture(autouse=True)
def same_threads(lib):
    assert lib.ember_set_num_threads(ember.get_num_threads()) == 0


def vp(a):
    return P(a.ctypes.data) if a is not None else None


def xent_args(b, v, target=None, probs=None, weight=None, eps=0.0, ignore_index=-100, reduction="mean"):
    return XentArgs(b, v, vp(target), vp(probs), vp(weight), eps, ignore_index, REDUCTIONS[reduction])


CASES = [dict(), dict(eps=0.25), dict(weighted=True), dict(weighted=True, eps=0.5, ignore=True),
         dict(ignore=True), dict(soft=True), dict(soft=True, weighted=True, eps=0.25)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_cross_entropy_equals_the_python_kernels(lib, rng, case, reduction):
    c = CASES[case]
    b, v = 37, 13
    z = (rng.standard_normal((b, v)) * 3).astype(np.float32)
    weight = rng.uniform(0.1, 2.0, v).astype(np.float32) if c.get("weighted") else None
    if c.get("soft"):
        target = rng.dirichlet(np.ones(v), b).astype(np.float32)
        t_int, t_probs = None, target
    else:
        target = rng.integers(0, v, b).astype(np.int64)
        if c.get("ignore"):
            target[::4] = -7
        t_int, t_probs = target, None
    kw = dict(weight=weight, ignore_index=-7, label_smoothing=c.get("eps", 0.0), reduction=reduction)
    want, want_lse = cross_entropy.cross_entropy_fwd(z, target, return_lse=True, **kw)
    args = xent_args(b, v, t_int, t_probs, weight, c.get("eps", 0.0), -7, reduction)
    loss, lse = np.empty(b if reduction == "none" else 1, np.float32), np.empty(b, np.float64)
    assert lib.ember_cross_entropy_forward_f32(ctypes.byref(args), vp(z), vp(loss), vp(lse)) == OK, \
        lib.ember_last_error()
    np.testing.assert_array_equal(lse, want_lse)
    if reduction == "none":
        np.testing.assert_array_equal(loss, want)
    else:
        np.testing.assert_allclose(loss[0], want, rtol=1e-6)
    grad = rng.standard_normal(b).astype(np.float32) if reduction == "none" else np.array([0.75], np.float32)
    want_dz = cross_entropy.cross_entropy_bwd(z, target, want_lse, grad if reduction == "none" else 0.75, **kw)
    dz = np.empty_like(z)
    assert lib.ember_cross_entropy_backward_f32(ctypes.byref(args), vp(z), vp(lse), vp(grad), vp(dz)) == OK
    np.testing.assert_array_equal(dz, want_dz)
    assert lib.ember_cross_entropy_backward_f32(ctypes.byref(args), vp(z), None, vp(grad), vp(z)) == OK  # in place
    np.testing.assert_array_equal(z, want_dz)


def test_cross_entropy_corner_cases(lib, rng):
    z = rng.standard_normal((4, 3)).astype(np.float32)
    ignored = np.full(4, -100, np.int64)
    loss = np.empty(1, np.float32)
    args = xent_args(4, 3, ignored)
    assert lib.ember_cross_entropy_forward_f32(ctypes.byref(args), vp(z), vp(loss), None) == OK
    assert np.isnan(loss[0])  # every target ignored: 0 / 0, as PyTorch
    dz = np.full_like(z, np.nan)
    assert lib.ember_cross_entropy_backward_f32(ctypes.byref(args), vp(z), None, None, vp(dz)) == OK
    assert (dz == 0).all()
    empty = xent_args(0, 3, np.zeros(0, np.int64), reduction="sum")
    assert lib.ember_cross_entropy_forward_f32(ctypes.byref(empty), None, vp(loss), None) == OK and loss[0] == 0


def test_cross_entropy_bad_arguments(lib, rng):
    z = rng.standard_normal((4, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 3], np.int64)
    t3, zeros = t % 3, np.zeros(4, np.int64)  # the structs hold pointers: the arrays must outlive them
    loss = np.empty(4, np.float32)
    probs = np.full((4, 3), 1 / 3, np.float32)
    cases = [
        (xent_args(4, 3, t), vp(z), "target[3] = 3 is neither a class in [0, 3) nor ignore_index (-100)"),
        (xent_args(4, 3), vp(z), "exactly one of target and target_probs must be given"),
        (xent_args(4, 3, zeros, probs), vp(z), "exactly one of target and target_probs"),
        (xent_args(4, 0, t), vp(z), "classes must be >= 1, got 0"),
        (xent_args(4, 3, t3, eps=1.5), vp(z), "label_smoothing must be in [0, 1], got 1.5"),
        (XentArgs(4, 3, vp(t3), None, None, 0.0, -100, 7), vp(z), "reduction must be"),
        (xent_args(4, 3, t3), None, "logits is NULL"),
        (xent_args(-1, 3, t3), vp(z), "batch must be >= 0, got -1"),
    ]
    for args, logits, message in cases:
        assert lib.ember_cross_entropy_forward_f32(ctypes.byref(args), logits, vp(loss), None) == INVALID
        text = lib.ember_last_error().decode()
        assert text.startswith("ember_cross_entropy_forward_f32: ") and message in text, text
    args = xent_args(4, 3, t3)
    assert lib.ember_cross_entropy_forward_f32(ctypes.byref(args), vp(z), vp(z), None) == INVALID
    assert b"loss must not share memory with logits" in lib.ember_last_error()
    assert lib.ember_cross_entropy_backward_f32(ctypes.byref(args), vp(z), None, None, vp(t3)) == INVALID
    assert b"dlogits must not share memory with target" in lib.ember_last_error()
    assert lib.ember_cross_entropy_forward_f32(None, vp(z), vp(loss), None) == INVALID
    assert b"args is NULL" in lib.ember_last_error()


def adam_lists(rng, sizes, amsgrad):
    def arrays():
        return [rng.standard_normal(n).astype(np.float32) for n in sizes]
    p, g, m = arrays(), arrays(), arrays()
    v = [np.abs(a) for a in arrays()]
    vmax = [np.abs(a) + 0.5 for a in arrays()] if amsgrad else None
    return p, g, m, v, vmax


@pytest.mark.parametrize("amsgrad, decoupled, maximize", [(False, False, False), (True, True, False),
                                                           (False, True, True)])
def test_adam_step_equals_python(lib, rng, amsgrad, decoupled, maximize):
    sizes, steps = [1, 17, 1000, 4099], [1, 3, 10, 2]
    p, g, m, v, vmax = adam_lists(rng, sizes, amsgrad)
    mine = [[a.copy() for a in lst] if lst is not None else None for lst in (p, g, m, v, vmax)]
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    ember._C.adam_step(p, g, m, v, vmax, steps, **hyper, decoupled=decoupled, maximize=maximize)
    tensors = (AdamTensor * 4)(*[AdamTensor(n, vp(mine[0][i]), vp(mine[1][i]), vp(mine[2][i]), vp(mine[3][i]),
                                            vp(mine[4][i]) if amsgrad else None, steps[i])
                                 for i, n in enumerate(sizes)])
    h = AdamHyper(**hyper, decoupled=decoupled, maximize=maximize)
    assert lib.ember_adam_step_f32(ctypes.byref(h), tensors, 4) == OK, lib.ember_last_error()
    for want, got in zip((p, m, v, vmax), (mine[0], mine[2], mine[3], mine[4])):
        for a, b in zip(want or [], got or []):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("momentum, nesterov, first", [(0.0, False, False), (0.9, True, True), (0.9, False, False)])
def test_sgd_step_equals_python(lib, rng, momentum, nesterov, first):
    sizes = [5, 300, 2049]
    p = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    g = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    buf = [rng.standard_normal(n).astype(np.float32) for n in sizes] if momentum else None
    mine = [[a.copy() for a in lst] if lst is not None else None for lst in (p, g, buf)]
    hyper = dict(lr=0.1, momentum=momentum, dampening=0.0, weight_decay=1e-4)
    ember._C.sgd_step(p, g, buf, **hyper, nesterov=nesterov, maximize=False, first=first)
    tensors = (SgdTensor * 3)(*[SgdTensor(n, vp(mine[0][i]), vp(mine[1][i]), vp(mine[2][i]) if momentum else None)
                                for i, n in enumerate(sizes)])
    h = SgdHyper(**hyper, nesterov=nesterov, maximize=0, first=first)
    assert lib.ember_sgd_step_f32(ctypes.byref(h), tensors, 3) == OK, lib.ember_last_error()
    for want, got in zip((p, buf), (mine[0], mine[2])):
        for a, b in zip(want or [], got or []):
            np.testing.assert_array_equal(b, a)


def test_optimizer_steps_bad_arguments(lib, rng):
    a, b, c, d = (rng.standard_normal(8).astype(np.float32) for _ in range(4))
    good = AdamHyper(1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 0)

    def adam(hyper, *tensors):
        array = (AdamTensor * len(tensors))(*tensors)
        status = lib.ember_adam_step_f32(ctypes.byref(hyper) if hyper else None, array, len(tensors))
        return status, lib.ember_last_error().decode()

    for hyper, tensors, message in [
        (AdamHyper(1e-3, 1.0, 0.999, 1e-8, 0.0, 0, 0), [], "beta1 must be in [0, 1), got 1"),
        (AdamHyper(float("nan"), 0.9, 0.999, 1e-8, 0.0, 0, 0), [], "lr must be a finite number >= 0"),
        (None, [], "hyper is NULL"),
        (good, [AdamTensor(8, vp(a), vp(b), vp(c), vp(d), None, 0)], "tensors[0].step must be >= 1, got 0"),
        (good, [AdamTensor(8, vp(a), None, vp(c), vp(d), None, 1)], "tensors[0].grad is NULL"),
        (good, [AdamTensor(-2, vp(a), vp(b), vp(c), vp(d), None, 1)], "tensors[0].n must be >= 0, got -2"),
        (good, [AdamTensor(8, vp(a), vp(b), vp(c), vp(a), None, 1)], "share memory"),
        (good, [AdamTensor(4, vp(a), vp(b), vp(c), vp(d), None, 1),
                AdamTensor(4, P(a.ctypes.data + 12), P(b.ctypes.data + 16), P(c.ctypes.data + 16),
                           P(d.ctypes.data + 16), None, 1)], "tensors[0].param and tensors[1].param share memory"),
        (good, [AdamTensor(8, vp(a), vp(b), vp(c), vp(d), vp(a), 1)], "share memory"),
        (good, [AdamTensor(4, vp(a), vp(b), vp(c), vp(d), None, 1),
                AdamTensor(4, P(a.ctypes.data + 16), P(b.ctypes.data + 16), P(c.ctypes.data + 16),
                           P(d.ctypes.data + 16), P(d.ctypes.data), 1)], "tensors[1].max_exp_avg_sq must be NULL"),
    ]:
        status, text = adam(hyper, *tensors)
        assert status == INVALID and text.startswith("ember_adam_step_f32: ") and message in text, text
    sgd = SgdHyper(0.1, 0.0, 0.0, 0.0, 1, 0, 0)
    array = (SgdTensor * 1)(SgdTensor(8, vp(a), vp(b), None))
    assert lib.ember_sgd_step_f32(ctypes.byref(sgd), array, 1) == INVALID
    assert b"nesterov needs momentum > 0 and dampening 0" in lib.ember_last_error()
    sgd = SgdHyper(0.1, 0.9, 0.0, 0.0, 0, 0, 0)
    assert lib.ember_sgd_step_f32(ctypes.byref(sgd), array, 1) == INVALID
    assert b"tensors[0].momentum_buffer must be given (momentum > 0)" in lib.ember_last_error()
    assert lib.ember_sgd_step_f32(ctypes.byref(sgd), None, 1) == INVALID and b"tensors is NULL" in \
        lib.ember_last_error()
    assert lib.ember_sgd_step_f32(ctypes.byref(sgd), None, 0) == OK  # an empty list: nothing to do


# ---------------------------------------------------------------- quantized weights and products
def qweight(lib, w, bits, group=32):
    handle = P()
    status = lib.ember_qweight_quantize_f32(vp(w), w.shape[0], w.shape[1], w.shape[1], bits, group,
                                            ctypes.byref(handle))
    assert status == OK, lib.ember_last_error()
    return handle


def packed(lib, handle):
    data, scales, colsum = P(), ctypes.POINTER(ctypes.c_float)(), ctypes.POINTER(ctypes.c_int32)()
    nd, ns, nc = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
    assert lib.ember_qweight_packed(handle, ctypes.byref(data), ctypes.byref(nd), ctypes.byref(scales),
                                    ctypes.byref(ns), ctypes.byref(colsum), ctypes.byref(nc)) == OK
    raw = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), (nd.value,)).copy()
    return raw, np.ctypeslib.as_array(scales, (ns.value,)).copy(), (
        np.ctypeslib.as_array(colsum, (nc.value,)).copy() if nc.value else None)


@pytest.mark.parametrize("bits, group", [(8, 32), (4, 32), (4, 64), (4, 8)])
def test_quantized_weights_and_products_equal_python(lib, rng, bits, group):
    from ember import quant

    n, k = 37, 100
    w = rng.standard_normal((n, k)).astype(np.float32)
    handle = qweight(lib, w, bits, group)
    try:
        want = quant.quantize_weight(w, bits, group if bits == 4 else None)  # the C functions' int8: per channel
        data, scales, colsum = packed(lib, handle)
        np.testing.assert_array_equal(data, want.data.view(np.uint8))
        np.testing.assert_array_equal(scales, want.scales)
        if bits == 8:
            np.testing.assert_array_equal(colsum, want.colsum)
        bias = rng.standard_normal(n).astype(np.float32)
        for m in (1, 5, 33):
            x = rng.standard_normal((m, k + 3)).astype(np.float32)[:, :k]  # a row stride beyond k
            y = np.full((m, n + 1), np.nan, np.float32)
            assert lib.ember_qmatmul_f32(handle, m, vp(x), k + 3, vp(bias), vp(y), n + 1) == OK, \
                lib.ember_last_error()
            np.testing.assert_array_equal(y[:, :n], want.matmul(np.ascontiguousarray(x), bias))
            assert np.isnan(y[:, n]).all()  # nothing written past each row
        x[0, 0] = np.nan
        assert lib.ember_qmatmul_f32(handle, m, vp(x), k + 3, None, vp(y), n + 1) == INVALID
        assert b"x holds NaN or infinite values" in lib.ember_last_error()
        # From the packed arrays again: the same weight.
        again = P()
        assert lib.ember_qweight_from_packed(bits, n, k, group, vp(data), data.size, vp(scales), scales.size,
                                             vp(colsum), 0 if colsum is None else colsum.size,
                                             ctypes.byref(again)) == OK, lib.ember_last_error()
        assert [np.array_equal(a, b) for a, b in zip(packed(lib, again)[:2], (data, scales))] == [True, True]
        lib.ember_qweight_free(again)
    finally:
        lib.ember_qweight_free(handle)


def packed_int8_groups(lib, handle):
    data, scales = P(), ctypes.POINTER(ctypes.c_uint16)()
    nd, ns = ctypes.c_int64(), ctypes.c_int64()
    status = lib.ember_qweight_packed_int8_groups(handle, ctypes.byref(data), ctypes.byref(nd), ctypes.byref(scales),
                                                  ctypes.byref(ns))
    assert status == OK, lib.ember_last_error()
    raw = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), (nd.value,)).copy()
    return raw, np.ctypeslib.as_array(scales, (ns.value,)).copy()


@pytest.mark.parametrize("group", [32, 8, 24, 64])
def test_int8_in_groups_weights_and_products_equal_python(lib, rng, group):
    """int8 in groups through the C functions: the same packed bytes and e6m10 scales as
    ember.quant's, the same product bits, and the packed arrays read back into the same weight."""
    from ember import quant

    n, k = 37, 100  # k not a multiple of any group: a last partial group
    w = (rng.standard_normal((n, k)) * np.exp(rng.uniform(-6, 3, (n, 1)))).astype(np.float32)
    handle = P()
    status = lib.ember_qweight_quantize_int8_groups_f32(vp(w), n, k, k, group, ctypes.byref(handle))
    assert status == OK, lib.ember_last_error()
    try:
        want = quant.quantize_weight(w, 8, group)
        data, scales = packed_int8_groups(lib, handle)
        np.testing.assert_array_equal(data, want.data)
        np.testing.assert_array_equal(scales, want.scales)
        bias = rng.standard_normal(n).astype(np.float32)
        for m in (1, 6, 33):
            x = rng.standard_normal((m, k + 5)).astype(np.float32)[:, :k]
            y = np.full((m, n + 2), np.nan, np.float32)
            assert lib.ember_qmatmul_f32(handle, m, vp(x), k + 5, vp(bias), vp(y), n + 2) == OK, \
                lib.ember_last_error()
            np.testing.assert_array_equal(y[:, :n], want.matmul(np.ascontiguousarray(x), bias))
            assert np.isnan(y[:, n:]).all()
        again = P()
        assert lib.ember_qweight_from_packed_int8_groups(n, k, group, vp(data), data.size, vp(scales), scales.size,
                                                         ctypes.byref(again)) == OK, lib.ember_last_error()
        try:
            back = packed_int8_groups(lib, again)
            assert np.array_equal(back[0], data) and np.array_equal(back[1], scales)
            x = rng.standard_normal((3, k)).astype(np.float32)
            y1, y2 = np.empty((3, n), np.float32), np.empty((3, n), np.float32)
            assert lib.ember_qmatmul_f32(handle, 3, vp(x), k, None, vp(y1), n) == OK
            assert lib.ember_qmatmul_f32(again, 3, vp(x), k, None, vp(y2), n) == OK
            np.testing.assert_array_equal(y1, y2)
        finally:
            lib.ember_qweight_free(again)
    finally:
        lib.ember_qweight_free(handle)


def test_int8_in_groups_bad_arguments(lib, rng):
    n, k, group = 20, 40, 16
    w = rng.standard_normal((n, k)).astype(np.float32)
    handle = P()

    def quantize(weight, *args):
        status = lib.ember_qweight_quantize_int8_groups_f32(vp(weight), *args, ctypes.byref(handle))
        return status, lib.ember_last_error().decode()

    for args, message in [((n, k, k, 12), "group_size must be a multiple of 8 from 8 to 4096, got 12"),
                          ((n, k, k, 0), "group_size must be a multiple of 8"),
                          ((n, k, k, 8192), "group_size must be a multiple of 8"),
                          ((n, 70000, 70000, group), "1 <= k <= 65536"),
                          ((n, k, 30, group), "leading dimension of w must be >= max(1, 40)")]:
        status, text = quantize(w, *args)
        assert status == INVALID and message in text and not handle, text
    huge = w.copy()
    huge[7, 33] = 2e12
    status, text = quantize(huge, n, k, k, group)
    assert status == INVALID and "(row 7, column 33)" in text and "1.09e12" in text and not handle, text
    bad = w.copy()
    bad[3, 4] = np.nan
    status, text = quantize(bad, n, k, k, group)
    assert status == INVALID and "NaN or infinite values (row 3, column 4)" in text
    assert lib.ember_qweight_quantize_int8_groups_f32(vp(w), n, k, k, group, None) == INVALID
    assert b"out is NULL" in lib.ember_last_error()

    status, _ = quantize(w, n, k, k, group)
    assert status == OK
    grouped = handle
    data, scales = packed_int8_groups(lib, grouped)
    # The float-scale accessor refuses this format, and this format's accessor the others.
    out = [P(), ctypes.c_int64(), ctypes.POINTER(ctypes.c_float)(), ctypes.c_int64(),
           ctypes.POINTER(ctypes.c_int32)(), ctypes.c_int64()]
    assert lib.ember_qweight_packed(grouped, *map(ctypes.byref, out)) == INVALID
    assert b"use ember_qweight_packed_int8_groups" in lib.ember_last_error()
    assert lib.ember_qweight_packed_int8_groups(grouped, None, None, None, None) == INVALID
    assert b"every output pointer must be given" in lib.ember_last_error()
    lib.ember_qweight_free(grouped)
    channel = qweight(lib, w, 8)
    out = [P(), ctypes.c_int64(), ctypes.POINTER(ctypes.c_uint16)(), ctypes.c_int64()]
    assert lib.ember_qweight_packed_int8_groups(channel, *map(ctypes.byref, out)) == INVALID
    assert b"w is not int8 in groups: use ember_qweight_packed" in lib.ember_last_error()
    lib.ember_qweight_free(channel)

    def from_packed(d, s, nd=None, ns=None, g=group):
        handle = P()
        status = lib.ember_qweight_from_packed_int8_groups(n, k, g, vp(d), d.size if nd is None else nd, vp(s),
                                                           s.size if ns is None else ns, ctypes.byref(handle))
        assert (status == OK) == bool(handle)
        lib.ember_qweight_free(handle)
        return status, lib.ember_last_error().decode()

    tampered = data.copy()
    tampered[11] = 0  # q = -128
    status, text = from_packed(tampered, scales)
    assert status == INVALID and "found -128 (byte 0)" in text
    assert "data_bytes is 7; the packed layout" in from_packed(data, scales, nd=7)[1]
    assert "scales_count is 3; the packed layout" in from_packed(data, scales, ns=3)[1]
    assert "group_size must be a multiple of 8" in from_packed(data, scales, g=20)[1]
    assert from_packed(data, scales)[0] == OK


def test_quantized_weights_bad_arguments(lib, rng):
    w = rng.standard_normal((20, 40)).astype(np.float32)
    handle = P()

    def quantize(*args):
        status = lib.ember_qweight_quantize_f32(*args, ctypes.byref(handle))
        return status, lib.ember_last_error().decode()

    for args, message in [((vp(w), 20, 40, 40, 3, 32), "bits must be 8 or 4, got 3"),
                          ((vp(w), 20, 40, 40, 4, 12), "group_size must be a multiple of 8"),
                          ((vp(w), 20, 70000, 70000, 8, 32), "1 <= k <= 65536"),
                          ((vp(w), 20, 40, 30, 8, 32), "leading dimension of w must be >= max(1, 40)"),
                          ((None, 20, 40, 40, 8, 32), "w is NULL")]:
        status, text = quantize(*args)
        assert status == INVALID and message in text and not handle, text
    # w is checked before the packed weight (4 GiB here) is allocated and zeroed.
    start = time.perf_counter()
    status, text = quantize(None, 2**16, 65536, 65536, 8, 0)
    assert status == INVALID and "w is NULL" in text and time.perf_counter() - start < 1.0
    bad = w.copy()
    bad[3, 4] = np.inf
    status, text = quantize(vp(bad), 20, 40, 40, 8, 32)
    assert status == INVALID and "NaN or infinite values (row 3, column 4)" in text
    good = qweight(lib, w, 8)
    data, scales, colsum = packed(lib, good)
    lib.ember_qweight_free(good)

    def from_packed(d, s, c, nd=None, nc=None):
        status = lib.ember_qweight_from_packed(8, 20, 40, 0, vp(d), d.size if nd is None else nd, vp(s), s.size,
                                               vp(c), c.size if nc is None else nc, ctypes.byref(handle))
        return status, lib.ember_last_error().decode()

    tampered = data.copy()
    tampered[5] = 0x80  # -128
    assert from_packed(tampered, scales, colsum)[1].endswith("int8 weights must lie in [-127, 127], found -128")
    wrong = colsum.copy()
    wrong[3] += 1
    assert "colsum: channel 3's column sum is" in from_packed(data, scales, wrong)[1]
    zero = scales.copy()
    zero[2] = 0
    assert "scales must be finite and > 0, found 0 at 2" in from_packed(data, zero, colsum)[1]
    assert "data_bytes is 7; the packed layout" in from_packed(data, scales, colsum, nd=7)[1]
    assert "colsum_count is 0" in from_packed(data, scales, colsum, nc=0)[1]
    assert lib.ember_qmatmul_f32(None, 1, None, 40, None, None, 20) == INVALID
    assert b"w is NULL" in lib.ember_last_error()
    lib.ember_qweight_free(None)
