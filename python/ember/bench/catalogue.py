"""The catalogue of kernel benchmarks: for each kernel, its sizes per preset, the work one call
does (floating-point operations or bytes it must move), and how to set up Ember's call, the
references' calls and the check that each timed result is right.

Presets: ``test`` (tiny: the test suite runs every case once), ``quick`` (``ember bench
--quick``: a minute on two cores) and ``full`` (the sizes the README's tables quote).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import references as R

PRESETS = ("test", "quick", "full")


@dataclass
class Prepared:
    """A case made ready to run: ``impls`` maps each implementation's name to a function of no
    arguments (Ember's first), ``check(name)`` raises AssertionError when that implementation's
    last result is wrong, ``skipped`` maps the references that cannot run here to the reason."""

    impls: dict
    check: Callable[[str], None]
    skipped: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One benchmark: a kernel at one size."""

    kernel: str
    shape: str  # for people: "1024x1024x1024", "64-64 32x32 (64, 64, 32, 32)"
    params: tuple  # what the kernel's setup takes
    work: float  # per call, in `unit`s
    unit: str  # "flop" (against the FMA peak) or "byte" (against the read bandwidth)
    precision: str = "fp32"

    def setup(self) -> Prepared:
        return KERNELS[self.kernel].setup(*self.params)


@dataclass(frozen=True)
class Kernel:
    name: str
    what: str
    presets: dict  # preset -> list of params
    label: Callable  # params -> shape text
    work: Callable  # params -> (work, unit)
    setup: Callable  # params -> Prepared
    impls: tuple  # every implementation a case may have: "ember", then the references
    precision: str = "fp32"
    sized_by: str = ""  # "MxKxN" where a --shape of that form replaces the preset's sizes

    def case(self, params) -> Case:
        work, unit = self.work(*params)
        return Case(self.name, self.label(*params), tuple(params), float(work), unit, self.precision)


def _rng():
    return np.random.default_rng(0)


def _torch_or_skip(skipped, name="torch"):
    torch = R.torch()
    if torch is None:
        skipped[name] = R.TORCH_MISSING
    return torch


def _sample_rows(m, count=8):
    """The rows a check compares: the first, the last (a partial block or thread share ends
    there) and some between, sorted."""
    rows = {0, m - 1, *np.random.default_rng(1).choice(m, size=min(m, count), replace=False).tolist()}
    return np.array(sorted(rows))


def _ends(n):
    """The first and last image of a batch of n."""
    return sorted({0, n - 1})


# ------------------------------------------------------------------------------------------ GEMM
def _gemm(m, k, n) -> Prepared:
    from ..kernels import gemm

    rng = _rng()
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    out = {}
    impls, skipped = {}, {}

    def target(name):
        out[name] = np.full((m, n), np.nan, np.float32)  # poisoned: the timed call must write it
        return out[name]

    impls["ember"] = functools.partial(gemm.gemm, a, b, out=target("ember"))
    impls["numpy"] = functools.partial(np.matmul, a, b, out=target("numpy"))
    torch = _torch_or_skip(skipped)
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(target("torch"))
        impls["torch"] = lambda: torch.matmul(ta, tb, out=tc)

    def check(name):
        rows = _sample_rows(m)
        want = a[rows].astype(np.float64) @ b.astype(np.float64)
        tol = (k + 4) * 2.0**-24 * (np.abs(a[rows]).astype(np.float64) @ np.abs(b).astype(np.float64))
        assert (np.abs(out[name][rows] - want) <= tol).all(), f"gemm {m}x{k}x{n}: {name} is wrong"

    return Prepared(impls, check, skipped)


def _gemm_bf16(m, k, n) -> Prepared:
    from ..kernels import gemm

    rng = _rng()
    a = gemm.convert_bf16(rng.standard_normal((m, k), dtype=np.float32))
    b = gemm.convert_bf16(rng.standard_normal((k, n), dtype=np.float32))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    out = {name: np.full((m, n), np.nan, np.float32) for name in ("ember", "ember fp32")}
    impls = {"ember": functools.partial(gemm.gemm, a, b, out=out["ember"]),
             "ember fp32": functools.partial(gemm.gemm, a32, b32, out=out["ember fp32"])}
    skipped = {}
    torch = _torch_or_skip(skipped, "torch bf16")
    if torch is not None:  # bf16 tensors in and out, as PyTorch computes a bf16 matmul
        ta = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        tb = torch.from_numpy(b.view(np.int16)).view(torch.bfloat16)
        tc = torch.empty((m, n), dtype=torch.bfloat16)
        impls["torch bf16"] = lambda: torch.matmul(ta, tb, out=tc)
        out["torch bf16"] = None

    def check(name):
        got = tc.float().numpy() if name == "torch bf16" else out[name]
        rows = _sample_rows(m)
        want = a32[rows].astype(np.float64) @ b32.astype(np.float64)
        scale = np.abs(a32[rows]).astype(np.float64) @ np.abs(b32).astype(np.float64)
        rel = 2.0**-8 if name == "torch bf16" else (k + 4) * 2.0**-24  # torch rounds its output to bf16
        assert (np.abs(got[rows] - want) <= rel * scale + 1e-30).all(), f"bf16 gemm {m}x{k}x{n}: {name} is wrong"

    return Prepared(impls, check, skipped)


def _gemm_label(m, k, n):
    return f"{m}x{k}x{n}"


# ------------------------------------------------------------------------------- convolution
# name, input shape, weight shape, conv arguments (stride, padding, groups)
_LAYERS = {
    "first 3-32 32x32": ((64, 3, 32, 32), (32, 3, 3, 3), (1, 1, 1)),
    "64-64 32x32": ((64, 64, 32, 32), (64, 64, 3, 3), (1, 1, 1)),
    "128-128 16x16": ((64, 128, 16, 16), (128, 128, 3, 3), (1, 1, 1)),
    "1x1 64-64 32x32": ((64, 64, 32, 32), (64, 64, 1, 1), (1, 0, 1)),
    "depthwise 3x3 64 32x32": ((64, 64, 32, 32), (64, 1, 3, 3), (1, 1, 64)),
    "stride-2 64-128 32x32": ((64, 64, 32, 32), (128, 64, 3, 3), (2, 1, 1)),
}
_TEST_LAYERS = [("first 3-8 8x8", (2, 3, 8, 8), (8, 3, 3, 3), (1, 1, 1)),
                ("16-16 8x8", (2, 16, 8, 8), (16, 16, 3, 3), (1, 1, 1)),
                ("depthwise 3x3 8 8x8", (2, 8, 8, 8), (8, 1, 3, 3), (1, 1, 8)),
                ("stride-2 8-16 9x9", (2, 8, 9, 9), (16, 8, 3, 3), (2, 1, 1))]


def _layers(*names):
    return [(name, *_LAYERS[name]) for name in names]


def _conv_out(x_shape, w_shape, stride, padding):
    return tuple((size + 2 * padding - k) // stride + 1 for size, k in zip(x_shape[2:], w_shape[2:]))


def _conv_flops(name, x_shape, w_shape, conv, backward=False):
    stride, padding, _ = conv
    oh, ow = _conv_out(x_shape, w_shape, stride, padding)
    forward = 2.0 * x_shape[0] * w_shape[0] * oh * ow * w_shape[1] * w_shape[2] * w_shape[3]
    if not backward:
        return forward, "flop"
    return forward * (2 if name.startswith("first") else 3), "flop"  # no input gradient for the data


def _conv_label(name, x_shape, w_shape, conv):
    return f"{name}, batch {x_shape[0]}"


def _conv_operands(x_shape, w_shape, stride, padding):
    rng = _rng()
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    dy = rng.standard_normal((x_shape[0], w_shape[0]) + _conv_out(x_shape, w_shape, stride, padding), dtype=np.float32)
    return x, w, b, dy


def _conv2d(name, x_shape, w_shape, conv) -> Prepared:
    from ..kernels import conv2d

    stride, padding, groups = conv
    kw = dict(stride=stride, padding=padding, groups=groups)
    x, w, b, _ = _conv_operands(x_shape, w_shape, stride, padding)
    result, impls, skipped = {}, {}, {}
    impls["ember"] = lambda: result.__setitem__("ember", conv2d.conv2d_fwd(x, w, b, **kw))
    torch = _torch_or_skip(skipped)
    if torch is not None:
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        impls["torch"] = lambda: result.__setitem__("torch", torch.nn.functional.conv2d(tx, tw, tb, **kw).numpy())
    if groups == 1:
        impls["im2col+numpy"] = lambda: result.__setitem__(
            "im2col+numpy", R.im2col_conv2d(x, w, b, padding=padding, stride=stride))
    else:
        skipped["im2col+numpy"] = "the explicit im2col reference covers groups=1 only"

    def check(impl):
        ends = _ends(x_shape[0])  # the first and last image against the plain-loop reference
        want = conv2d.conv2d_fwd_ref(x[ends], w, b, **kw)
        k = w_shape[1] * w_shape[2] * w_shape[3]
        np.testing.assert_allclose(result[impl][ends], want, rtol=0,
                                   atol=(k + 4) * 2.0**-24 * 4 * (np.abs(want).max() + 1),
                                   err_msg=f"conv2d {name}: {impl}")

    return Prepared(impls, check, skipped)


def _weight_gradient_rows(x, dy, w_shape, stride, padding, groups, rows):
    """Rows (output channels) of the weight gradient in float64, image by image."""
    o, cg, kh, kw = w_shape
    per_group = o // groups
    out = np.zeros((len(rows), cg * kh * kw))
    for i, oc in enumerate(rows):
        g = oc // per_group
        for n in range(x.shape[0]):
            patches, _ = R.im2col_patches(x[n:n + 1, g * cg:(g + 1) * cg].astype(np.float64), kh, kw, padding, stride)
            out[i] += patches[0] @ dy[n, oc].reshape(-1).astype(np.float64)
    return out.reshape((len(rows), cg, kh, kw))


def _conv2d_train(name, x_shape, w_shape, conv) -> Prepared:
    """Forward, weight and bias gradients, and the input gradient except for a first layer."""
    from ..kernels import conv2d

    stride, padding, groups = conv
    kw = dict(stride=stride, padding=padding, groups=groups)
    need_dx = not name.startswith("first")
    x, w, b, dy = _conv_operands(x_shape, w_shape, stride, padding)
    result, impls, skipped = {}, {}, {}

    def ember_step():
        y = conv2d.conv2d_fwd(x, w, b, **kw)
        dx = conv2d.conv2d_bwd_data(dy, w, x.shape, **kw) if need_dx else None
        result["ember"] = (y, dx, *conv2d.conv2d_bwd_weight(x, dy, w.shape, bias=True, **kw))

    impls["ember"] = ember_step
    torch = _torch_or_skip(skipped)
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(need_dx)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        tdy = torch.from_numpy(dy)

        def torch_step():
            tx.grad = tw.grad = tb.grad = None
            ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
            ty.backward(tdy)
            result["torch"] = (ty.detach().numpy(), tx.grad.numpy() if need_dx else None, tw.grad.numpy(),
                               tb.grad.numpy())

        impls["torch"] = torch_step
    if groups == 1:
        def numpy_step():
            y = R.im2col_conv2d(x, w, b, padding=padding, stride=stride)
            result["im2col+numpy"] = (y, *R.im2col_conv2d_backward(x, w, dy, padding, stride, need_dx))

        impls["im2col+numpy"] = numpy_step
    else:
        skipped["im2col+numpy"] = "the explicit im2col reference covers groups=1 only"

    def check(impl):
        y, dx, dw, db = result[impl]
        k = w_shape[1] * w_shape[2] * w_shape[3]
        ends = _ends(x_shape[0])
        want = conv2d.conv2d_fwd_ref(x[ends], w, b, **kw)
        np.testing.assert_allclose(y[ends], want, rtol=0, atol=(k + 4) * 2.0**-24 * 4 * (np.abs(want).max() + 1),
                                   err_msg=f"conv2d {name} forward: {impl}")
        terms = dy.shape[0] * dy.shape[2] * dy.shape[3]
        rows = sorted({0, w_shape[0] - 1, w_shape[0] // 2})
        want_dw = _weight_gradient_rows(x, dy, w_shape, stride, padding, groups, rows)
        np.testing.assert_allclose(dw[rows], want_dw, rtol=1e-4, atol=terms * 2.0**-20 * 16,
                                   err_msg=f"conv2d {name} weight gradient: {impl}")
        np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4, atol=terms * 2.0**-20 * 4,
                                   err_msg=f"conv2d {name} bias gradient: {impl}")
        if need_dx:
            want_dx = conv2d.conv2d_bwd_data_ref(dy[ends], w, (len(ends),) + x_shape[1:], **kw)
            np.testing.assert_allclose(dx[ends], want_dx, rtol=0, atol=(k + 4) * 2.0**-24 * 16 * (np.abs(want_dx).max() + 1),
                                       err_msg=f"conv2d {name} input gradient: {impl}")

    return Prepared(impls, check, skipped)


# ------------------------------------------------------------------------------ cross-entropy
def _logsumexp64(z):
    z = z.astype(np.float64)
    m = z.max(axis=1)
    return m + np.log(np.exp(z - m[:, None]).sum(axis=1))


def _cross_entropy(b, v) -> Prepared:
    """Mean softmax cross-entropy of b rows of v logits, forward and backward."""
    from ..kernels import cross_entropy as ce

    rng = _rng()
    z = (rng.standard_normal((b, v), dtype=np.float32) * 2).astype(np.float32)
    t = rng.integers(0, v, b)
    dz = np.empty_like(z)
    result, impls, skipped = {}, {}, {}

    def ember_step():
        loss, lse = ce.cross_entropy_fwd(z, t, return_lse=True)
        result["ember"] = loss, ce.cross_entropy_bwd(z, t, lse, out=dz)

    impls["ember"] = ember_step
    torch = _torch_or_skip(skipped)
    if torch is not None:
        tz, tt = torch.from_numpy(z), torch.from_numpy(t)

        def torch_step():
            x = tz.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(x, tt)
            loss.backward()
            result["torch"] = loss.item(), x.grad.numpy()

        impls["torch"] = torch_step
    impls["numpy"] = lambda: result.__setitem__("numpy", R.unfused_cross_entropy(z, t))

    def check(impl):
        loss, grad = result[impl]
        lse = np.concatenate([_logsumexp64(z[r:r + 256]) for r in range(0, b, 256)])
        want = float(np.mean(lse - z[np.arange(b), t]))
        np.testing.assert_allclose(loss, want, rtol=1e-5, err_msg=f"cross_entropy {b}x{v}: {impl} loss")
        rows = _sample_rows(b, 4)
        want_dz = ce.cross_entropy_bwd_ref(z[rows], t[rows], lse[rows], 1.0 / b, reduction="sum")
        np.testing.assert_allclose(grad[rows], want_dz, rtol=1e-4, atol=1e-6 / b,
                                   err_msg=f"cross_entropy {b}x{v}: {impl} gradient")

    return Prepared(impls, check, skipped)


# --------------------------------------------------------------------------- quantized matmul
# Each format beside the one it is an alternative to: (name, bits, group size).
_QMATMUL_BESIDE = {(4, None, True): ("ember int4 g32", 4, 32), (8, 32, False): ("ember int8", 8, None)}


def _qmatmul(bits, m, k, n, group=None, codebook=False) -> Prepared:
    """x (m x k) times the transpose of a quantized n x k weight (int4 in groups of 32 beside the
    int4 codebook format, int8 per channel beside int8 in groups)."""
    from .. import quant
    from ..kernels import gemm

    rng = _rng()
    x, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)
    qw = quant.quantize_weight(w, bits, group, codebook=codebook)
    beside = _QMATMUL_BESIDE.get((bits, group, codebook))
    out = {name: np.full((m, n), np.nan, np.float32) for name in ("ember", "ember fp32", "numpy fp32") +
           ((beside[0],) if beside else ())}
    impls = {"ember": lambda: qw.matmul(x, out=out["ember"]),
             "ember fp32": functools.partial(gemm.gemm, x, w, trans_b=True, out=out["ember fp32"]),
             "numpy fp32": lambda: np.matmul(x, w.T, out=out["numpy fp32"])}
    quantized = {"ember": qw}
    if beside:
        name = beside[0]
        quantized[name] = other = quant.quantize_weight(w, beside[1], beside[2])
        impls[name] = lambda: other.matmul(x, out=out[name])
    skipped = {}
    torch = _torch_or_skip(skipped, "torch int8")
    if torch is not None:  # PyTorch's dynamic int8 Linear (fbgemm)
        lin = torch.nn.utils.skip_init(torch.nn.Linear, k, n, bias=False)  # no random initialisation to overwrite
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        with warnings.catch_warnings():  # PyTorch announces the deprecation of its eager quantization
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        xt = torch.from_numpy(x)

        def torch_step():
            with torch.no_grad():
                out["torch int8"] = q(xt).numpy()

        impls["torch int8"] = torch_step

    # The checks compare some rows of the output (all of a matrix-vector product) in some of its
    # columns, the first and last among them (a partial block of the weight's rows ends there),
    # against float64 products of x and those rows of the weight.
    rows, cols = _sample_rows(m), _sample_rows(n, 256)
    x64, size = x[rows].astype(np.float64), np.abs(x[rows]).astype(np.float64)
    w64 = w[cols].astype(np.float64)
    exact, magnitude = x64 @ w64.T, size @ np.abs(w64).T  # x @ w.T, and |x| @ |w|.T: the scale of its rounding

    def check(impl):
        got = out[impl][rows]
        if impl.endswith("fp32"):
            bound = (k + 4) * 2.0**-24 * magnitude
            assert (np.abs(got[:, cols] - exact) <= bound).all(), f"qmatmul {m}x{k}x{n}: {impl} is wrong"
        elif impl in quantized:
            # Ember's integer kernels give the bits of the plain-loop int64 reference exactly, in every
            # column: that decides.
            differ = int((got != quantized[impl].matmul(x[rows], reference=True)).sum())
            assert not differ, \
                f"qmatmul {m}x{k}x{n}: {impl} differs from its reference in {differ} of {got.size} values"
            # That reference is x times the weight it holds, but for rounding x to int8 (steps of at most
            # max|x| / 127 per row) and float32 scaling.
            wq = quantized[impl].dequantize()[cols].astype(np.float64)
            bound = _rounding_bound(x64, wq, size.max(axis=1) / 127, 0.0) + 2.0**-19 * (size @ np.abs(wq).T)
            assert (np.abs(got[:, cols] - x64 @ wq.T) <= bound).all(), \
                f"qmatmul {m}x{k}x{n}: {impl} is not x times its weight"
        else:  # a reference quantizing in its own way (PyTorch's: per tensor, activations in 7 bits)
            step_x = (max(float(x.max()), 0.0) - min(float(x.min()), 0.0)) / 127
            bound = _rounding_bound(x64, w64, step_x, np.abs(w).max() / 127) + 2.0**-19 * magnitude
            assert (np.abs(got[:, cols] - exact) <= bound).all(), f"qmatmul {m}x{k}x{n}: {impl} is wrong"

    return Prepared(impls, check, skipped)


def _rounding_bound(x, w, step_x, step_w):
    """A bound on each element of the error of x @ w.T when x and w are rounded to the nearest
    multiple of ``step_x`` (per row of x, or one) and ``step_w``: each product's error lies within
    a range of |w| step_x + |x| step_w + step_x step_w, the errors are independent and centred on
    random data, so by Hoeffding's inequality their sum exceeds this with probability below 1e-12:
    it grows with sqrt(k) and the steps, as the real error does."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    x2 = np.einsum("ij,ij->i", x, x)[:, None]  # row sums of squares, without a squared copy
    w2 = np.einsum("ij,ij->i", w, w)[None, :]
    sx = np.reshape(step_x, (-1, 1))
    spread = 3 * (sx**2 * w2 + step_w**2 * x2 + x.shape[1] * (sx * step_w) ** 2)  # (a + b + c)^2 <= 3(a^2 + b^2 + c^2)
    return np.sqrt(np.log(2e12) / 2 * spread)


def _qmatmul_bytes(bits, m, k, n, group=None, codebook=False):
    from .. import quant

    sizes = quant.packed_sizes(n, k, bits, group, codebook)
    return float(sum(np.dtype(dtype).itemsize * count for dtype, count in sizes.values())), "byte"


# --------------------------------------------------------------------------------- max pooling
def _max_pool2d(shape, backward=False) -> Prepared:
    """2x2 / stride-2 max pooling with its argmax indices (and the backward through them)."""
    from ..kernels import pool2d

    rng = _rng()
    x = rng.standard_normal(shape, dtype=np.float32)
    want, want_idx = pool2d.max_pool2d_fwd_ref(x, 2)
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    result, impls, skipped = {}, {}, {}

    # Each result: (output, indices or None, input gradient or None).
    def ember_step():
        y, idx = pool2d.max_pool2d_fwd(x, 2, return_indices=True)
        result["ember"] = y, idx, pool2d.max_pool2d_bwd(dy, idx, x.shape) if backward else None

    impls["ember"] = ember_step
    torch = _torch_or_skip(skipped)
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)

        def torch_step():
            if not backward:
                y, idx = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)
                result["torch"] = y.numpy(), idx.numpy(), None
                return
            xr = tx.detach().requires_grad_()
            y, idx = torch.nn.functional.max_pool2d(xr, 2, return_indices=True)
            y.backward(tdy)
            result["torch"] = y.detach().numpy(), idx.numpy(), xr.grad.numpy()

        impls["torch"] = torch_step
    n, c, h, w = shape
    if backward:
        pass  # NumPy has no pooling of its own to differentiate
    elif h % 2 == 0 and w % 2 == 0:
        impls["numpy"] = lambda: result.__setitem__(
            "numpy", (x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)), None, None))
    else:
        skipped["numpy"] = "NumPy's reshape-and-max pools even sizes only"

    def check(impl):
        y, idx, dx = result[impl]
        np.testing.assert_array_equal(y, want, err_msg=f"max_pool2d {shape}: {impl}")
        if idx is not None:
            np.testing.assert_array_equal(idx, want_idx, err_msg=f"max_pool2d {shape} indices: {impl}")
        if backward:
            np.testing.assert_allclose(dx, pool2d.max_pool2d_bwd_ref(dy, want_idx, x.shape), rtol=1e-6,
                                       err_msg=f"max_pool2d {shape} backward: {impl}")

    return Prepared(impls, check, skipped)


def _shape_label(shape):
    return "x".join(str(s) for s in shape)


def _input_bytes(shape):
    return 4.0 * float(np.prod(shape)), "byte"


_GEMM_FULL = [(64, 64, 64), (128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024),
              (2048, 2048, 2048), (1000, 999, 1001), (1021, 1021, 1021),
              (65536, 27, 32),  # im2col of a 3->32 channel 3x3 convolution, batch 64 of 32x32
              (64, 7200, 128),  # a dense layer
              (1, 4096, 4096), (8, 4096, 4096)]  # matrix-vector and small batch
_CONV_FULL = _layers(*_LAYERS)
_QMATMUL_IMPLS = ("ember", "ember fp32", "numpy fp32", "torch int8")
_POOL = [((64, 32, 30, 30),)]  # the seed CNN's activation after its convolution, batch 64

KERNELS = {k.name: k for k in [
    Kernel("gemm", "fp32 GEMM, C = A @ B",
           {"test": [(7, 5, 3), (64, 64, 64), (33, 65, 47)], "quick": [(512, 512, 512), (1024, 1024, 1024), (64, 7200, 128)],
            "full": _GEMM_FULL},
           _gemm_label, lambda m, k, n: (2.0 * m * k * n, "flop"), _gemm, ("ember", "numpy", "torch"), sized_by="MxKxN"),
    Kernel("gemm_bf16", "bf16 GEMM, float32 sums and output",
           {"test": [(7, 5, 3), (64, 64, 64)], "quick": [(1024, 1024, 1024)],
            "full": [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (64, 7200, 128), (4096, 1024, 1024)]},
           _gemm_label, lambda m, k, n: (2.0 * m * k * n, "flop"), _gemm_bf16, ("ember", "ember fp32", "torch bf16"),
           precision="bf16", sized_by="MxKxN"),
    Kernel("conv2d", "conv2d forward with bias",
           {"test": _TEST_LAYERS, "quick": _layers("64-64 32x32"), "full": _CONV_FULL},
           _conv_label, _conv_flops, _conv2d, ("ember", "torch", "im2col+numpy")),
    Kernel("conv2d_train", "conv2d forward, weight/bias gradients and (past the first layer) the input gradient",
           {"test": _TEST_LAYERS, "quick": _layers("first 3-32 32x32"), "full": _CONV_FULL},
           _conv_label, functools.partial(_conv_flops, backward=True), _conv2d_train, ("ember", "torch", "im2col+numpy")),
    Kernel("cross_entropy", "mean softmax cross-entropy, forward and backward (logits read twice, gradient written)",
           {"test": [(64, 10), (37, 1000)], "quick": [(4096, 1000)],
            "full": [(64, 10), (4096, 1000), (2048, 32768), (8192, 50257)]},
           lambda b, v: f"{b}x{v}", lambda b, v: (3.0 * b * v * 4, "byte"), _cross_entropy, ("ember", "torch", "numpy")),
    Kernel("qmatmul_int8", "int8 weights x float32 activations (bytes: the packed weights)",
           {"test": [(3, 256, 96)], "quick": [(1, 4096, 4096), (64, 4096, 4096)],
            "full": [(64, 4096, 4096), (1, 4096, 4096), (1, 8192, 8192)]},
           _gemm_label, functools.partial(_qmatmul_bytes, 8), functools.partial(_qmatmul, 8), _QMATMUL_IMPLS,
           precision="int8", sized_by="MxKxN"),
    Kernel("qmatmul_int8g", "int8 weights in groups of 32 (8.5 bits) x float32 activations (bytes: the packed weights)",
           {"test": [(3, 300, 96)], "quick": [(1, 4096, 4096)],
            "full": [(1, 4096, 14336), (1, 4096, 4096), (64, 4096, 4096)]},
           _gemm_label, functools.partial(_qmatmul_bytes, 8, group=32), functools.partial(_qmatmul, 8, group=32),
           ("ember", "ember int8") + _QMATMUL_IMPLS[1:], precision="int8", sized_by="MxKxN"),
    Kernel("qmatmul_int4", "int4 weights (groups of 32) x float32 activations (bytes: the packed weights)",
           {"test": [(3, 256, 96)], "quick": [(1, 4096, 4096)],
            "full": [(64, 4096, 4096), (1, 4096, 4096), (1, 8192, 8192)]},
           _gemm_label, functools.partial(_qmatmul_bytes, 4, group=32), functools.partial(_qmatmul, 4, group=32),
           _QMATMUL_IMPLS, precision="int4", sized_by="MxKxN"),
    Kernel("qmatmul_int4cb", "int4 codebook weights (4.5 bits) x float32 activations (bytes: the packed weights)",
           {"test": [(3, 300, 96)], "quick": [(1, 4096, 4096)],
            "full": [(1, 4096, 14336), (1, 4096, 4096), (64, 4096, 4096)]},
           _gemm_label, functools.partial(_qmatmul_bytes, 4, codebook=True), functools.partial(_qmatmul, 4, codebook=True),
           ("ember", "ember int4 g32") + _QMATMUL_IMPLS[1:], precision="int4", sized_by="MxKxN"),
    Kernel("max_pool2d", "2x2 max pooling with indices (bytes: the input read)",
           {"test": [((2, 3, 6, 6),), ((1, 2, 5, 7),)], "quick": _POOL, "full": _POOL},
           _shape_label, _input_bytes, _max_pool2d, ("ember", "torch", "numpy")),
    Kernel("max_pool2d_train", "2x2 max pooling, forward and backward (bytes: the input read)",
           {"test": [((2, 3, 6, 6),)], "quick": _POOL, "full": _POOL},
           _shape_label, _input_bytes, functools.partial(_max_pool2d, backward=True), ("ember", "torch")),
]}


def cases(kernels=None, preset: str = "quick", shapes=None) -> list:
    """The cases of ``kernels`` (a name or names; default all, or the GEMM with ``shapes``) at
    ``preset``'s sizes, or at ``shapes`` (MxKxN triples) for the kernels sized that way."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if isinstance(kernels, str):  # one name
        kernels = [kernels]
    names = list(kernels) if kernels else (["gemm"] if shapes else list(KERNELS))
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise ValueError(f"unknown kernel {unknown[0]!r}; the kernels are {', '.join(KERNELS)}")
    if shapes:
        unsized = [n for n in names if not KERNELS[n].sized_by]
        if unsized:
            raise ValueError(f"--shape sizes only {', '.join(n for n in KERNELS if KERNELS[n].sized_by)}; "
                             f"name those kernels (not {', '.join(unsized)})")
    out = []
    for name in names:
        kernel = KERNELS[name]
        for params in (shapes if shapes else kernel.presets[preset]):
            out.append(kernel.case(params))
    return out
