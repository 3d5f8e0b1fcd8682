"""ember._cuda.gemm: every variant (simt fp32 and bf16, mma, wgmma) against the CPU reference
on awkward shapes, transposes, strides, batches and the full epilogue (alpha, beta, bias, ReLU),
with outputs poisoned with NaN before each call. bf16 inputs are compared with the reference
computed on the bf16-rounded inputs; the tolerance grows with K."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_close, bf16_bits, bf16_to_f32, cp, dev, host, poisoned, ref_fn, sync

pytestmark = CUDA_MARKS

U = 2.0**-24


def reference(a_op, b_op, alpha=1.0, beta=0.0, c0=None, bias=None, relu=False):
    """alpha * a_op @ b_op + beta * c0 + bias (ReLU) in float64, through ember._C.gemm_ref for small
    problems (the CPU oracle) and NumPy float64 for large ones; plus the elementwise error scale."""
    m, k = a_op.shape
    n = b_op.shape[1]
    if m * n * k <= 4_000_000 and m * n > 0:
        gemm_ref = ref_fn("gemm_ref")
        out = np.zeros((m, n), np.float32) if c0 is None else c0.astype(np.float32).copy()
        gemm_ref(np.ascontiguousarray(a_op, np.float32), np.ascontiguousarray(b_op, np.float32), out, alpha,
                 beta if c0 is not None else 0.0, False, False, bias, relu)
        want = out.astype(np.float64)
    else:
        want = alpha * (a_op.astype(np.float64) @ b_op.astype(np.float64))
        if c0 is not None and beta != 0:
            want += beta * c0.astype(np.float64)
        if bias is not None:
            want += bias.astype(np.float64)
        if relu:
            want = np.where(want < 0, 0.0, want)
    scale = abs(alpha) * (np.abs(a_op.astype(np.float64)) @ np.abs(b_op.astype(np.float64)))
    if c0 is not None and beta != 0:
        scale += abs(beta) * np.abs(c0.astype(np.float64))
    if bias is not None:
        scale += np.abs(bias.astype(np.float64))
    return want, scale


def make_operand(rng, rows, cols, trans, dtype, pad=0):
    """A host array whose op() is rows x cols: stored (rows, cols) or, when trans, (cols, rows); `pad`
    extra columns make the leading dimension larger than the extent (a sliced view on the device)."""
    shape = (cols, rows) if trans else (rows, cols)
    full = rng.standard_normal((shape[0], shape[1] + pad)).astype(np.float32)
    if dtype == "bf16":
        bits = bf16_bits(full)
        vals = bf16_to_f32(bits)
        d = dev(bits)[:, : shape[1]]
    else:
        vals = full
        d = dev(full)[:, : shape[1]]
    v = vals[:, : shape[1]]
    return d, (v.T if trans else v)


def run_case(rng, variant, dtype, m, n, k, trans_a, trans_b, alpha=1.0, beta=0.0, with_bias=False, relu=False,
             pad=0, out_dtype="f32"):
    a, a_op = make_operand(rng, m, k, trans_a, dtype, pad)
    b, b_op = make_operand(rng, k, n, trans_b, dtype, pad)
    c0 = rng.standard_normal((m, n)).astype(np.float32) if beta != 0 else None
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    if out_dtype == "bf16":
        c0 = bf16_to_f32(bf16_bits(c0)) if c0 is not None else None
        out = dev(bf16_bits(c0)) if c0 is not None else poisoned((m, n), np.uint16)
        if c0 is None:
            out[...] = 0x7FC0  # NaN in bf16
    else:
        out = dev(c0) if c0 is not None else poisoned((m, n))
    K.gemm(a, b, out, alpha, beta, trans_a, trans_b, None if bias is None else dev(bias), relu, variant)
    sync()
    got = bf16_to_f32(host(out)) if out_dtype == "bf16" else host(out)
    want, scale = reference(a_op, b_op, alpha, beta, c0, bias, relu)
    factor = 2.0 if variant == "simt" else 4.0
    tol = factor * (k + 4) * U * scale + 1e-30
    rtol = 2.0**-8 if out_dtype == "bf16" else 0.0
    assert_close(got, want, rtol, tol, f"gemm[{variant},{dtype}->{out_dtype}] {m}x{n}x{k} trans=({trans_a},"
                 f"{trans_b}) alpha={alpha} beta={beta} bias={with_bias} relu={relu} pad={pad}")


SHAPES = [(0, 5, 3), (5, 0, 3), (4, 5, 0), (1, 1, 1), (1, 7, 13), (13, 1, 7), (37, 45, 29), (128, 128, 8),
          (129, 130, 17), (200, 64, 256), (257, 129, 300)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_simt_fp32_shapes(rng, shape, trans_a, trans_b):
    run_case(rng, "simt", "f32", *shape, trans_a, trans_b)


@pytest.mark.parametrize("pad", [1, 3])
def test_simt_fp32_unaligned_leading_dimensions(rng, pad):
    # Leading dimensions that are not multiples of 4: the scalar-load path.
    for ta in (False, True):
        for tb in (False, True):
            run_case(rng, "simt", "f32", 33, 35, 37, ta, tb, pad=pad)


@pytest.mark.parametrize("variant,dtype", [("simt", "f32"), ("simt", "bf16"), ("mma", "bf16"), ("wgmma", "bf16")])
@pytest.mark.parametrize("alpha", [1.0, -0.5])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5, -0.25])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_epilogue(rng, variant, dtype, alpha, beta, with_bias, relu):
    trans_b = dtype == "bf16"  # b as the transpose of a row-major (N, K) array: ldb = 72, as mma/wgmma need
    run_case(rng, variant, dtype, 67, 133, 72, False, trans_b, alpha, beta, with_bias, relu)


# Tensor-core shapes: leading dimensions are padded to multiples of 8 (`pad`), so M, N and K
# themselves can be ragged; K large enough to cycle the pipelines several times.
TC_SHAPES = [(1, 8, 8), (8, 8, 16), (37, 45, 29), (128, 128, 32), (129, 130, 33), (128, 256, 64), (129, 257, 72),
             (256, 512, 1032), (300, 520, 200)]


def tc_case(rng, variant, shape, trans_a, trans_b, out_dtype="f32", **kw):
    m, n, k = shape
    # Store each operand with rows padded to a multiple of 8 elements, then slice.
    a_cols = m if trans_a else k
    b_cols = k if trans_b else n
    pad_a = (-a_cols) % 8
    pad_b = (-b_cols) % 8
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a_full = rng.standard_normal((a_shape[0], a_shape[1] + pad_a)).astype(np.float32)
    b_full = rng.standard_normal((b_shape[0], b_shape[1] + pad_b)).astype(np.float32)
    a_bits, b_bits = bf16_bits(a_full), bf16_bits(b_full)
    a = dev(a_bits)[:, : a_shape[1]]
    b = dev(b_bits)[:, : b_shape[1]]
    a_op = bf16_to_f32(a_bits)[:, : a_shape[1]]
    b_op = bf16_to_f32(b_bits)[:, : b_shape[1]]
    a_op = a_op.T if trans_a else a_op
    b_op = b_op.T if trans_b else b_op
    plan = K.gemm_plan(a, b, poisoned((m, n)), trans_a, trans_b, variant)
    assert plan in (variant, "none", "simt"), plan
    alpha, beta = kw.get("alpha", 1.0), kw.get("beta", 0.0)
    c0 = rng.standard_normal((m, n)).astype(np.float32) if beta != 0 else None
    if out_dtype == "bf16":
        if c0 is None:
            out = cp.full((m, n), 0x7FC0, dtype=cp.uint16)  # bf16 NaN
        else:
            out = dev(bf16_bits(c0))
            c0 = bf16_to_f32(bf16_bits(c0))
    else:
        out = dev(c0) if c0 is not None else poisoned((m, n))
    K.gemm(a, b, out, alpha, beta, trans_a, trans_b, None, False, variant)
    sync()
    got = bf16_to_f32(host(out)) if out_dtype == "bf16" else host(out)
    want, scale = reference(a_op, b_op, alpha, beta, c0)
    assert_close(got, want, 2.0**-8 if out_dtype == "bf16" else 0.0, 4.0 * (k + 4) * U * scale + 1e-30,
                 f"gemm[{variant}] {m}x{n}x{k} trans=({trans_a},{trans_b}) out={out_dtype} plan={plan}")


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", TC_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mma_shapes(rng, shape, trans_a, trans_b):
    tc_case(rng, "mma", shape, trans_a, trans_b)


@pytest.mark.parametrize("shape", TC_SHAPES + [(1000, 1000, 1000), (64, 2048, 128)], ids=lambda s: "x".join(map(str, s)))
def test_wgmma_shapes(rng, shape):
    tc_case(rng, "wgmma", shape, False, True)


@pytest.mark.parametrize("variant", ["simt", "mma", "wgmma"])
def test_bf16_output(rng, variant):
    tc_case(rng, variant, (129, 257, 72), False, True, out_dtype="bf16")
    tc_case(rng, variant, (64, 64, 64), False, True, out_dtype="bf16", beta=0.5)


def test_wgmma_refuses_other_layouts(rng):
    a = dev(bf16_bits(rng.standard_normal((64, 64))))
    b = dev(bf16_bits(rng.standard_normal((64, 64))))
    with pytest.raises(ValueError, match="K-contiguous"):
        K.gemm(a, b, poisoned((64, 64)), 1.0, 0.0, False, False, None, False, "wgmma")
    with pytest.raises(ValueError, match="bf16"):
        K.gemm(dev(rng.standard_normal((8, 8)).astype(np.float32)), dev(rng.standard_normal((8, 8)).astype(np.float32)),
               poisoned((8, 8)), 1.0, 0.0, False, True, None, False, "wgmma")


def test_auto_plans(rng):
    big_a = dev(bf16_bits(rng.standard_normal((1024, 1024))))
    big_b = dev(bf16_bits(rng.standard_normal((1024, 1024))))
    out = poisoned((1024, 1024))
    cc = cp.cuda.Device().compute_capability
    assert K.gemm_plan(big_a, big_b, out, False, True) == ("wgmma" if cc == "90" else "mma")
    assert K.gemm_plan(big_a, big_b, out, False, False) == "mma"
    odd = dev(bf16_bits(rng.standard_normal((5, 7))))
    assert K.gemm_plan(odd, dev(bf16_bits(rng.standard_normal((7, 3)))), poisoned((5, 3))) == "simt"
    f32 = dev(rng.standard_normal((64, 64)).astype(np.float32))
    assert K.gemm_plan(f32, f32, poisoned((64, 64))) == "simt"


@pytest.mark.parametrize("variant,dtype", [("simt", "f32"), ("simt", "bf16"), ("mma", "bf16"), ("wgmma", "bf16")])
def test_batched(rng, variant, dtype):
    batch, m, n, k = 3, 70, 90, 40
    conv = (lambda x: dev(bf16_bits(x))) if dtype == "bf16" else dev
    vals = (lambda x: bf16_to_f32(bf16_bits(x))) if dtype == "bf16" else (lambda x: x)
    a_h = rng.standard_normal((batch, m, k)).astype(np.float32)
    b_h = rng.standard_normal((batch, n, k)).astype(np.float32)  # op(b) = b[z].T: K-contiguous
    shared_h = rng.standard_normal((n, k)).astype(np.float32)
    for b_dev, b_vals in ((conv(b_h), vals(b_h)), (conv(shared_h), vals(shared_h)[None].repeat(batch, 0))):
        out = poisoned((batch, m, n))
        K.gemm(conv(a_h), b_dev, out, 1.0, 0.0, False, True, None, False, variant)
        sync()
        got = host(out)
        for z in range(batch):
            want, scale = reference(vals(a_h)[z], b_vals[z].T)
            assert_close(got[z], want, 0.0, 4 * (k + 4) * U * scale + 1e-30, f"gemm[{variant}] batch entry {z}")


def test_beta_zero_never_reads_out_and_nan_propagates(rng):
    a_h = rng.standard_normal((20, 30)).astype(np.float32)
    a_h[3, 4] = np.nan
    b_h = rng.standard_normal((30, 10)).astype(np.float32)
    for variant in ("simt",):
        out = poisoned((20, 10))  # NaN in out must not leak with beta == 0
        K.gemm(dev(a_h), dev(b_h), out, 1.0, 0.0, False, False, None, True, variant)
        sync()
        got = host(out)
        assert np.isnan(got[3]).all(), "a NaN in row 3 of a must give NaN in row 3 of out, ReLU included"
        assert not np.isnan(np.delete(got, 3, axis=0)).any(), "beta == 0 read the NaN-poisoned out"


def test_alpha_zero_and_k_zero_read_only_out(rng):
    c0 = rng.standard_normal((9, 11)).astype(np.float32)
    bias = rng.standard_normal(11).astype(np.float32)
    a = dev(np.full((9, 5), np.nan, np.float32))
    b = dev(np.full((5, 11), np.nan, np.float32))
    out = dev(c0)
    K.gemm(a, b, out, 0.0, 2.0, False, False, dev(bias), True)
    sync()
    assert_close(host(out), np.maximum(2.0 * c0.astype(np.float64) + bias, 0), 1e-6, 1e-6, "alpha == 0")
    out = dev(c0)
    K.gemm(dev(np.zeros((9, 0), np.float32)), dev(np.zeros((0, 11), np.float32)), out, 1.0, 0.5, False, False,
           None, False)
    sync()
    assert_close(host(out), 0.5 * c0.astype(np.float64), 1e-6, 1e-6, "K == 0")


def test_strided_out_and_views(rng):
    m, n, k = 33, 21, 17
    a_h = rng.standard_normal((m, k)).astype(np.float32)
    b_h = rng.standard_normal((k, n)).astype(np.float32)
    big = poisoned((m, n + 7))
    out = big[:, 3 : 3 + n]  # a padded slice: row stride n + 7
    K.gemm(dev(a_h), dev(b_h), out, 1.0, 0.0, False, False, None, False, "simt")
    sync()
    want, scale = reference(a_h, b_h)
    assert_close(host(out), want, 0.0, 2 * (k + 4) * U * scale + 1e-30, "padded out")
    assert np.isnan(host(big[:, :3])).all() and np.isnan(host(big[:, 3 + n :])).all(), "wrote outside out"


def test_non_unit_strides_are_refused(rng):
    a = dev(rng.standard_normal((8, 16)).astype(np.float32))[:, ::2]
    b = dev(rng.standard_normal((8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="contiguous copy"):
        K.gemm(a, b, poisoned((8, 8)))


def test_out_is_required_and_checked(rng):
    a = dev(rng.standard_normal((4, 5)).astype(np.float32))
    b = dev(rng.standard_normal((5, 6)).astype(np.float32))
    with pytest.raises(TypeError, match="out is required"):
        K.gemm(a, b, None)
    with pytest.raises(ValueError, match="shape"):
        K.gemm(a, b, poisoned((4, 5)))
    with pytest.raises(TypeError, match="float32"):
        K.gemm(a, b, poisoned((4, 6), np.float64))
    with pytest.raises(ValueError, match="inner dimensions"):
        K.gemm(a, a, poisoned((4, 5)))
    with pytest.raises(ValueError, match="variant"):
        K.gemm(a, b, poisoned((4, 6)), variant="fast")
