"""The property every case must keep, and what it means for each function.

For a case (see fuzz_harness), ``check_case`` calls the function under test (the fast path)
and, where there is one, its plain-loop reference twin, each on its own copy of the case's
buffer, then checks:

1. Nothing outside the outputs changed: every byte of the buffer that is not an element of an
   output view (inputs, the gaps between arrays, the bytes skipped by strided views) still
   holds what it held before the call. This is the canary check, and "inputs unchanged".
2. An exception is ValueError, TypeError, OverflowError or MemoryError (or a subclass), and a
   ValueError/TypeError/OverflowError names one of the function's arguments; pybind11's
   "incompatible function arguments" does not count. The fast path and the reference raise
   the same type. An error that depends on values only ("holds NaN", "target[3] = ...") must
   not appear when a contiguous copy of the same values is accepted: that would mean the
   call read values from outside its arrays.
3. A call that returns gives what the reference gives on contiguous copies of the same values
   (the "canonical" call), within the function's tolerance: the fast path on the case's
   layout, and the reference on the case's layout too, so that layout handling shared by both
   in the bindings is checked against a layout that needs none.
4. Finite, moderate inputs give finite outputs (NaN is never made up, e.g. from an empty
   window or from the sentinel in a gap or an output that must not be read).
5. Where a NumPy computation of the result is cheap, the canonical result matches it.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import ember
from ember import _C, quant
from ember.kernels import conv2d as kconv
from ember.kernels import cross_entropy as kxent
from ember.kernels import eltwise as kelt
from ember.kernels import gemm as kgemm
from ember.kernels import optim_step as kopt
from ember.kernels import pool2d as kpool
from fuzz_harness import Case, arrays_of, build, byte_mask, canonical, flat_arrays

U32 = 2.0**-24
ALLOWED = (ValueError, TypeError, OverflowError, MemoryError)


class Failure(AssertionError):
    pass


def fail(msg: str):
    raise Failure(msg)


# ------------------------------------------------------------------ comparisons


def assert_close(what: str, got, want, atol=0.0, rtol=0.0, exact_class: bool = True) -> None:
    """got == want within atol + rtol*|want| where both are finite; NaN and +-inf where the
    other has them (exact_class) or at least non-finite where the other is non-finite."""
    if isinstance(want, tuple) or isinstance(got, tuple):
        if not (isinstance(want, tuple) and isinstance(got, tuple) and len(got) == len(want)):
            fail(f"{what}: got {type(got).__name__} {_short(got)}, want {_short(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(f"{what}[{i}]", g, w, atol, rtol, exact_class)
        return
    if want is None or got is None:
        if not (want is None and got is None):
            fail(f"{what}: got {_short(got)}, want {_short(want)}")
        return
    g, w = np.asarray(got), np.asarray(want)
    if g.shape != w.shape or g.dtype != w.dtype:
        fail(f"{what}: got {g.dtype}{list(g.shape)}, want {w.dtype}{list(w.shape)}")
    if g.dtype.kind not in "fc":
        if not np.array_equal(g, w):
            i = np.argwhere(g != w)[0] if g.ndim else ()
            fail(f"{what}: differs at {tuple(i)}: got {g[tuple(i)]!r}, want {w[tuple(i)]!r}")
        return
    gf, wf = g.astype(np.complex128 if g.dtype.kind == "c" else np.float64), w.astype(
        np.complex128 if w.dtype.kind == "c" else np.float64)
    gfin, wfin = np.isfinite(gf), np.isfinite(wf)
    if exact_class:
        bad = (np.isnan(gf) != np.isnan(wf)) | (np.isinf(gf) != np.isinf(wf))
        bad |= np.isinf(wf) & np.isinf(gf) & (gf != wf)
    else:
        bad = gfin != wfin
    both = gfin & wfin
    with np.errstate(invalid="ignore", over="ignore"):
        tol = np.broadcast_to(np.asarray(atol, np.float64) + rtol * np.abs(wf), wf.shape)
        err = np.abs(gf - wf)
        bad |= both & ~(err <= tol)
    if bad.any():
        i = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        fail(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {i}: got {gf[i]!r}, "
             f"want {wf[i]!r} (tolerance {float(tol[i]) if np.ndim(tol) else float(tol):.3g})")


def _short(x) -> str:
    r = repr(x)
    return r if len(r) < 200 else r[:200] + "..."


def finite0(a, nonfinite: float = 0.0) -> np.ndarray:
    """|a| in float64 with NaN and inf replaced by `nonfinite` (0 for tolerance magnitudes,
    inf to find the outputs that depend on a non-finite input)."""
    a = np.abs(np.asarray(a, np.float64))
    return np.where(np.isfinite(a), a, nonfinite)


def all_finite(*arrays) -> bool:
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            return False
        if a.dtype.kind == "f" and a.size and np.abs(a.astype(np.float64)).max() > 1e15:
            return False  # "huge" values may legitimately overflow in float32 arithmetic
    return True


# ------------------------------------------------------------------ the op table


@dataclass
class OpSpec:
    fast: Callable
    ref: Callable | None = None
    outputs: tuple = ()  # argument names whose elements the call may write
    names: tuple = ()  # words besides the argument names that an error may name
    keywords: bool = False  # call with keywords (the Python API) rather than positionally
    value_errors: tuple = ()  # fragments of messages that depend on values only
    compare: Callable | None = None  # (case, key, got, want, canon) -> None
    finite_inputs: tuple | None = ()  # argument names that must be finite for rule 4; None: no rule 4
    finite_outputs: tuple | None = None  # output keys rule 4 applies to (None: all)
    oracle: Callable | None = None  # (case, canon values dict, canon outputs dict) -> None
    text: str = ""  # how the call reads in a reproducer
    same_errors: bool = True  # fast and reference raise the same exception type (False: the
    #                           reference is a composition that checks in another order)
    ref_float64: bool = False  # the reference also runs float64, which the fast path refuses


OPS: dict[str, OpSpec] = {}


def op(name: str, **kw):
    OPS[name] = OpSpec(**kw)


def call_text(case: Case, names: list) -> str:
    spec = OPS[case.op]
    if spec.keywords:
        args = ", ".join(f"{k}={n}" for (k, _), n in zip(case.args, names))
    else:
        args = ", ".join(names)
    return f"{spec.text or case.op}({args})"


# ------------------------------------------------------------------ running a case


@dataclass
class Run:
    ret: Any
    err: BaseException | None
    outs: dict = field(default_factory=dict)


def _call(spec: OpSpec, fn: Callable, case: Case, values: list):
    try:
        if spec.keywords:
            return fn(**{k: v for (k, _), v in zip(case.args, values)}), None
        return fn(*values), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - every exception is judged below
        return None, e


def _snapshot(x):
    """A copy of a returned value (arrays copied, tuples elementwise)."""
    if isinstance(x, tuple):
        return tuple(_snapshot(v) for v in x)
    if isinstance(x, list):
        return tuple(_snapshot(v) for v in x)
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    if isinstance(x, (np.floating, np.integer)):
        return np.array(x)
    return x


def _outputs(spec: OpSpec, case: Case, values: list, ret) -> dict:
    outs = {}
    for (k, v), x in zip(case.args, values):
        if k in spec.outputs and isinstance(x, np.ndarray):
            outs[k] = np.array(x, copy=True)
        elif k in spec.outputs and isinstance(x, list):
            for j, y in enumerate(x):
                if isinstance(y, np.ndarray):
                    outs[f"{k}[{j}]"] = np.array(y, copy=True)
    outs["return"] = _snapshot(ret)
    return outs


def _where(case: Case, byte: int) -> str:
    if byte < 0:
        return "before the buffer"
    for k, v in case.args:
        for j, a in enumerate(arrays_of(v)):
            lo, hi = a.span()
            if lo <= byte < hi:
                return f"inside the span of {k}" + (f"[{j}]" if isinstance(v, list) else "")
    return "in a gap between arrays"


def _err_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:600]}"


def _word(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def check_error(spec: OpSpec, case: Case, variant: str, e: BaseException) -> None:
    if not isinstance(e, ALLOWED):
        fail(f"{variant} raised {_err_text(e)} (only ValueError, TypeError, OverflowError or MemoryError may be "
             f"raised)")
    msg = str(e)
    if "incompatible function arguments" in msg:
        fail(f"{variant} raised pybind11's argument-conversion error instead of a ValueError/OverflowError naming "
             f"the argument: {msg.splitlines()[0]} ... Invoked with: {msg.rsplit('Invoked with:', 1)[-1][-300:]}")
    if isinstance(e, MemoryError):
        if not msg:
            fail(f"{variant} raised MemoryError without a message")
        return
    words = [k for k, _ in case.args] + list(spec.names)
    if not any(_word(w, msg) for w in words):
        fail(f"{variant} raised {_err_text(e)}, which names none of the arguments {words}")


def check_case(case: Case) -> str:
    spec = OPS[case.op]
    ember.set_isa(case.isa)
    ember.set_num_threads(case.threads)
    out_arrays = [a for k, v in case.args if k in spec.outputs for a in arrays_of(v)]
    runs: dict[str, Run] = {}
    variants = [("fast", spec.fast)] + ([("ref", spec.ref)] if spec.ref is not None else [])
    for variant, fn in variants:
        region, values = build(case)
        before = region.copy()
        out_mask = byte_mask(case.nbytes, out_arrays, region.size)
        print(f"--- calling the {variant} path", file=sys.stderr, flush=True)  # named in a crash report
        ret, err = _call(spec, fn, case, values)
        changed = np.flatnonzero((region != before) & ~out_mask)
        if changed.size:
            b = int(changed[0]) - (region.size - case.nbytes)  # bytes from the buffer's start
            fail(f"{variant} wrote outside its outputs: {changed.size} bytes changed, the first at byte {b} "
                 f"({_where(case, b)})" + (f"; it raised {_err_text(err)}" if err else ""))
        runs[variant] = Run(ret, err, _outputs(spec, case, values, ret) if err is None else {})

    fast = runs["fast"]
    for variant, r in runs.items():
        if r.err is not None and (variant == "fast" or spec.same_errors):  # a composed reference
            check_error(spec, case, variant, r.err)                      # names its parts' arguments
    if "ref" in runs:
        ref = runs["ref"]
        fe, re_ = fast.err, ref.err
        if (spec.ref_float64 and isinstance(fe, TypeError) and "float64" in str(fe)
                and any(a.dtype == "float64" for a, _ in flat_arrays(case.args))):
            return "error:TypeError (float64: the reference only)"  # the reference's error was judged above
        if (fe is None) != (re_ is None) and not isinstance(fe or re_, MemoryError) and spec.same_errors:
            if fe is not None:
                fail(f"fast raised {_err_text(fe)} but the reference returned")
            fail(f"the reference raised {_err_text(re_)} but fast returned")
        if (fe is not None and re_ is not None and type(fe) is not type(re_) and not isinstance(fe, MemoryError)
                and spec.same_errors):
            fail(f"fast raised {_err_text(fe)} but the reference raised {_err_text(re_)}")

    # The canonical call: contiguous copies of the same values, through the reference.
    buf, values = build(case)
    canon = canonical(case, values)
    oracle_fn = spec.ref if spec.ref is not None else spec.fast
    pristine = [np.array(x, copy=True) if isinstance(x, np.ndarray) else
                [np.array(y, copy=True) if isinstance(y, np.ndarray) else y for y in x] if isinstance(x, list) else x
                for x in canon]
    print("--- calling the reference on contiguous copies", file=sys.stderr, flush=True)
    cret, cerr = _call(spec, oracle_fn, case, canon)

    errors = [r.err for r in runs.values() if r.err is not None]
    if errors:
        e = errors[0]
        if cerr is None and any(f in str(e) for f in spec.value_errors):
            fail(f"raised {_err_text(e)}, but contiguous copies of the same values are accepted: the call read "
                 f"values from outside its arrays")
        return f"error:{type(e).__name__}"
    if cerr is not None:
        if isinstance(cerr, MemoryError):
            return "error:MemoryError"
        empty = [k for (k, _), x in zip(case.args, canon) if isinstance(x, np.ndarray) and x.size == 0]
        note = (f" (the copies of the empty arrays {empty} have the strides NumPy gives fresh empty arrays, "
                f"{[tuple(x.strides) for x in canon if isinstance(x, np.ndarray) and x.size == 0]})" if empty else "")
        fail(f"the case's layout was accepted, but contiguous copies of the same arrays were refused: "
             f"{_err_text(cerr)}{note}")
    want = _outputs(spec, case, canon, cret)
    cmp = spec.compare or _compare_exact
    kv = {k: v for (k, _), v in zip(case.args, pristine)}  # the arguments as they were before the call
    for variant, r in runs.items():
        for key in want:
            if key not in r.outs:
                continue
            cmp(case, f"{variant} {key}", r.outs[key], want[key], kv)
    if spec.finite_inputs is not None:
        inputs = [kv[n] for n in spec.finite_inputs if n in kv and isinstance(kv[n], np.ndarray)]
        scalars = [float(kv[n]) for n in spec.finite_inputs if n in kv and isinstance(kv[n], (int, float))
                   and not isinstance(kv[n], bool)]
        if all_finite(*inputs) and all(math.isfinite(s) and abs(s) < 1e15 for s in scalars):
            for key, v in want.items():
                if spec.finite_outputs is not None and key not in spec.finite_outputs:
                    continue
                for i, a in enumerate(v if isinstance(v, tuple) else (v,)):
                    if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
                        j = tuple(np.argwhere(~np.isfinite(a))[0])
                        fail(f"finite inputs gave a non-finite output: {key}{f'[{i}]' if isinstance(v, tuple) else ''}"
                             f"{list(j)} = {a[j]!r} (shape {a.shape})")
    if spec.oracle is not None:
        spec.oracle(case, kv, want)
    return "value"


def _compare_exact(case, what, got, want, canon):
    assert_close(what, got, want)


# ------------------------------------------------------------------ GEMM


def _gemm_expect(kv: dict):
    """NumPy's float64 result of the GEMM and the magnitude that bounds its rounding."""
    a, b = kv["a"], kv["b"]
    a = a.T if kv["trans_a"] else a
    b = b.T if kv["trans_b"] else b
    alpha, beta = float(kv["alpha"]), float(kv["beta"])
    with np.errstate(all="ignore"):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if alpha == 0.0 or a.shape[1] == 0:  # BLAS: with alpha = 0 or K = 0 there is no product term at all
            # (a and b are not read: NaN and inf in them, or a NaN alpha times an empty sum, do not matter)
            want = np.zeros((a.shape[0], b.shape[1]))
        else:
            want = alpha * _matmul_ieee(a64, b64)
        mag = abs(alpha) * (finite0(a) @ finite0(b)) if math.isfinite(alpha) else np.zeros(want.shape)
        if beta != 0.0:
            want = want + beta * kv["out"].astype(np.float64)
            mag = mag + (abs(beta) * finite0(kv["out"]) if math.isfinite(beta) else 0.0)
        if kv["bias"] is not None:
            want = want + kv["bias"].astype(np.float64)
            mag = mag + finite0(kv["bias"])
        if kv["relu"]:
            want = np.where(np.isnan(want), want, np.maximum(want, 0.0))
    return want, mag


def _matmul_ieee(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b with IEEE semantics for NaN and inf (BLAS may skip products with zeros)."""
    if np.isfinite(a).all() and np.isfinite(b).all():
        return a @ b
    return (a[:, :, None] * b[None, :, :]).sum(axis=1) if a.size and b.size else a @ b


def _gemm_tol(kv: dict) -> np.ndarray:
    k = kv["a"].shape[0] if kv["trans_a"] else kv["a"].shape[1]
    _, mag = _gemm_expect(kv)
    return 4 * (k + 3) * U32 * mag + 1e-30


def _gemm_compare(case, what, got, want, kv):
    assert_close(what, got, want, atol=_gemm_tol(kv) if got is not None and np.ndim(got) == 2 else 0.0)


def _gemm_oracle(case, kv, outs):
    want, _ = _gemm_expect(kv)
    assert_close("the canonical result against NumPy", outs["return"], want.astype(np.float32),
                 atol=_gemm_tol(kv))


_GEMM_NAMES = ("op(a)", "op(b)", "inner")
for _name, _fn, _ref in [("gemm", _C.gemm, _C.gemm_ref)]:
    op(_name, fast=_fn, ref=_ref, outputs=("out",), names=_GEMM_NAMES, compare=_gemm_compare,
       finite_inputs=("a", "b", "bias", "alpha", "beta"), oracle=_gemm_oracle, text="_C.gemm")


def _door_gemm(ref):
    def call(a, b, out=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None, relu=False):
        f = kgemm.gemm_ref if ref else kgemm.gemm
        return f(a, b, out=out, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b, bias=bias, relu=relu)
    return call


op("kernels.gemm", fast=_door_gemm(False), ref=_door_gemm(True), outputs=("out",), names=_GEMM_NAMES,
   keywords=True, compare=_gemm_compare, finite_inputs=("a", "b", "bias", "alpha", "beta"), oracle=_gemm_oracle,
   text="kernels.gemm.gemm")


def _matmul_oracle(case, kv, outs):
    a, b = kv["a"], kv["b"]
    with np.errstate(all="ignore"):
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        mag = np.matmul(finite0(a), finite0(b))
    got = outs["return"]
    k = a.shape[-1]
    assert_close("matmul against numpy.matmul", got, np.asarray(want, np.float32), atol=4 * (k + 3) * U32 * mag,
                 exact_class=False)


def _matmul_compare(case, what, got, want, kv):
    # The GEMM sums in an order that depends on the operands' layout: compare within rounding.
    a, b = kv["a"], kv["b"]
    if got is None or want is None or not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return assert_close(what, got, want)
    with np.errstate(all="ignore"):
        mag = np.matmul(finite0(a), finite0(b))
    if np.shape(mag) != np.shape(want):
        mag = np.broadcast_to(finite0(mag).max(initial=0.0), np.shape(want))
    assert_close(what, got, want, atol=4 * (a.shape[-1] + 3) * U32 * mag + 1e-30)


op("kernels.matmul", fast=lambda a, b, out=None: kgemm.matmul(a, b, out=out), outputs=("out",), keywords=True,
   names=("matmul",), compare=_matmul_compare, finite_inputs=("a", "b"), oracle=_matmul_oracle,
   text="kernels.gemm.matmul")


# ------------------------------------------------------------------ convolution


def _conv_mag_fwd(kv, nonfinite=0.0):
    x, w, b = kv["x"], kv["w"], kv["bias"]
    y = np.zeros(kv["out"].shape, np.float32)
    a32 = lambda a: finite0(a, nonfinite).astype(np.float32)  # noqa: E731
    with np.errstate(all="ignore"):
        _C.conv2d_fwd_ref(a32(x), a32(w), None if b is None else a32(b), y, *_conv_params(kv), False)
    return y.astype(np.float64), w.shape[1] * w.shape[2] * w.shape[3]


def _conv_params(kv):
    return [kv[n] for n in ("sh", "sw", "pt", "pl", "dh", "dw", "groups")]


def _skip_contaminated(got, want, dirty):
    """Outputs that depend on a non-finite input are NaN or inf, or 0 after a ReLU, depending on
    the algorithm (Winograd's transforms turn inf into inf - inf); the others must match."""
    if dirty is None or not dirty.any():
        return got, want
    got, want = np.array(got, copy=True), np.array(want, copy=True)
    got[dirty] = want[dirty] = 0
    return got, want


def _conv_tol_compare(mag_fn):
    def compare(case, what, got, want, kv):
        if got is None or np.ndim(got) != 4:
            return assert_close(what, got, want)
        mag, terms = mag_fn(kv)
        dirty = ~np.isfinite(mag_fn(kv, np.inf)[0])
        got, want = _skip_contaminated(got, want, dirty)
        # Winograd's transforms and per-thread partial sums round differently from the direct
        # double sum, and the transforms mix neighbouring outputs (or taps) of a plane: the
        # rounding error of one is bounded by the magnitudes in its plane.
        plane = mag.max(axis=(2, 3), keepdims=True) if mag.size else mag
        assert_close(what, got, want, atol=16 * (terms + 3) * U32 * plane + 1e-30)
    return compare


def _conv_mag_bwd_data(kv, nonfinite=0.0):
    dy, w = kv["dy"], kv["w"]
    dx = np.zeros(kv["out"].shape, np.float32)
    with np.errstate(all="ignore"):
        _C.conv2d_bwd_data_ref(finite0(dy, nonfinite).astype(np.float32), finite0(w, nonfinite).astype(np.float32),
                               dx, *_conv_params(kv))
    return dx.astype(np.float64), w.shape[0] * w.shape[2] * w.shape[3]


def _conv_mag_bwd_weight(kv, nonfinite=0.0):
    x, dy = kv["x"], kv["dy"]
    dw = np.zeros(kv["out"].shape, np.float32)
    with np.errstate(all="ignore"):
        _C.conv2d_bwd_weight_ref(finite0(x, nonfinite).astype(np.float32), finite0(dy, nonfinite).astype(np.float32),
                                 dw, None, *_conv_params(kv))
    return dw.astype(np.float64), dy.shape[0] * dy.shape[2] * dy.shape[3]


def _conv_bwd_weight_compare(case, what, got, want, kv):
    if got is None or np.ndim(got) not in (1, 4):
        return assert_close(what, got, want)
    if np.ndim(got) == 4:
        return _conv_tol_compare(_conv_mag_bwd_weight)(case, what, got, want, kv)
    dy = kv["dy"]
    mag = finite0(dy).sum(axis=(0, 2, 3))
    assert_close(what, got, want, atol=4 * (dy.shape[0] * dy.shape[2] * dy.shape[3] + 3) * U32 * mag + 1e-30)


_CONV_NAMES = ("input", "weight", "out", "output", "stride", "padding", "dilation", "groups", "grad_output",
               "out_bias", "bias", "kernel", "dilated")  # "the dilated kernel spans ..." names dilation
op("conv2d_fwd", fast=_C.conv2d_fwd, ref=_C.conv2d_fwd_ref, ref_float64=True, outputs=("out",), names=_CONV_NAMES,
   compare=_conv_tol_compare(_conv_mag_fwd), finite_inputs=("x", "w", "bias"), text="_C.conv2d_fwd")
op("conv2d_bwd_data", fast=_C.conv2d_bwd_data, ref=_C.conv2d_bwd_data_ref, ref_float64=True, outputs=("out",), names=_CONV_NAMES,
   compare=_conv_tol_compare(_conv_mag_bwd_data), finite_inputs=("dy", "w"), text="_C.conv2d_bwd_data")
op("conv2d_bwd_weight", fast=_C.conv2d_bwd_weight, ref=_C.conv2d_bwd_weight_ref, ref_float64=True, outputs=("out", "out_bias"),
   names=_CONV_NAMES, compare=_conv_bwd_weight_compare, finite_inputs=("x", "dy"), text="_C.conv2d_bwd_weight")


def _wrap_conv_compare(case, what, got, want, kv):
    """The Python API: the tolerance scales with the reference's result on |inputs|."""
    mags = []
    for nonfinite in (0.0, np.inf):
        absd = {k: (finite0(v, nonfinite).astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float32
                    else v) for k, v in kv.items()}
        try:
            with np.errstate(all="ignore"):
                mags.append(OPS[case.op].ref(**absd))
        except ALLOWED:
            mags.append(None)
    terms = min(max((v.size for v in kv.values() if isinstance(v, np.ndarray)), default=1), 4096)
    _cmp_mag(what, got, want, mags[0], mags[1], terms)


def _cmp_mag(what, got, want, mag, dirty_mag, terms):
    if isinstance(want, tuple) and isinstance(mag, tuple) and isinstance(got, tuple) and len(got) == len(want):
        for i, (g, w, m, d) in enumerate(zip(got, want, mag, dirty_mag)):
            _cmp_mag(f"{what}[{i}]", g, w, m, d, terms)
        return
    if want is None or mag is None or np.shape(mag) != np.shape(want) or np.shape(dirty_mag) != np.shape(want):
        return assert_close(what, got, want, exact_class=False)
    if np.shape(got) == np.shape(want):
        got, want = _skip_contaminated(got, want, ~np.isfinite(np.asarray(dirty_mag, np.float64)))
    mag = finite0(mag)
    if mag.ndim == 4 and mag.size:
        mag = mag.max(axis=(2, 3), keepdims=True)  # as in _conv_tol_compare
    assert_close(what, got, want, atol=16 * (terms + 3) * U32 * mag + 1e-30)


def _conv_api(fn):
    def call(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
        return fn(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups, relu=relu)
    return call


_API_CONV_NAMES = _CONV_NAMES + ("input_shape", "weight_shape", "kernel", "channels")
op("kernels.conv2d_fwd", fast=_conv_api(kconv.conv2d_fwd), ref=_conv_api(kconv.conv2d_fwd_ref), keywords=True,
   names=_API_CONV_NAMES, compare=_wrap_conv_compare, finite_inputs=("input", "weight", "bias"),
   text="kernels.conv2d.conv2d_fwd")


def _conv_bwd_data_api(fn):
    def call(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
        return fn(grad_output, weight, input_shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return call


op("kernels.conv2d_bwd_data", fast=_conv_bwd_data_api(kconv.conv2d_bwd_data),
   ref=_conv_bwd_data_api(kconv.conv2d_bwd_data_ref), keywords=True, names=_API_CONV_NAMES,
   compare=_wrap_conv_compare, finite_inputs=("grad_output", "weight"), text="kernels.conv2d.conv2d_bwd_data")


def _conv_bwd_weight_api(fn):
    def call(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1, bias=False):
        return fn(input, grad_output, weight_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                  bias=bias)
    return call


op("kernels.conv2d_bwd_weight", fast=_conv_bwd_weight_api(kconv.conv2d_bwd_weight),
   ref=_conv_bwd_weight_api(kconv.conv2d_bwd_weight_ref), keywords=True, names=_API_CONV_NAMES,
   compare=_wrap_conv_compare, finite_inputs=("input", "grad_output"), text="kernels.conv2d.conv2d_bwd_weight")


# ------------------------------------------------------------------ pooling

_POOL_NAMES = ("input", "out", "output", "out_indices", "indices", "grad_output", "kernel_size", "stride",
               "padding", "dilation", "output_size", "input_shape", "plane", "window", "kernel", "dilated")


def _avg_compare(case, what, got, want, kv):
    if got is None or np.ndim(got) == 0:
        return assert_close(what, got, want)
    src = [v for k, v in kv.items() if isinstance(v, np.ndarray) and v.dtype == np.float32 and k not in ("out",)]
    scale = max((finite0(s).max(initial=0.0) for s in src), default=0.0)
    terms = max((s.size for s in src), default=1)
    assert_close(what, got, want, atol=4 * (min(terms, 4096) + 3) * U32 * (scale + 1e-30), rtol=4 * U32)


op("max_pool2d_fwd", fast=_C.max_pool2d_fwd, ref=_C.max_pool2d_fwd_ref, ref_float64=True, outputs=("out", "out_indices"),
   names=_POOL_NAMES, finite_inputs=("x",), text="_C.max_pool2d_fwd")
op("max_pool2d_bwd", fast=_C.max_pool2d_bwd, ref=_C.max_pool2d_bwd_ref, ref_float64=True, outputs=("out",), names=_POOL_NAMES,
   value_errors=("is outside the input plane",), compare=_avg_compare, finite_inputs=("dy",),
   text="_C.max_pool2d_bwd")
op("avg_pool2d_fwd", fast=_C.avg_pool2d_fwd, ref=_C.avg_pool2d_fwd_ref, ref_float64=True, outputs=("out",), names=_POOL_NAMES,
   compare=_avg_compare, finite_inputs=("x",), text="_C.avg_pool2d_fwd")
op("avg_pool2d_bwd", fast=_C.avg_pool2d_bwd, ref=_C.avg_pool2d_bwd_ref, ref_float64=True, outputs=("out",), names=_POOL_NAMES,
   compare=_avg_compare, finite_inputs=("dy",), text="_C.avg_pool2d_bwd")


def _adaptive_oracle(case, kv, outs):
    x = kv["x"].astype(np.float64)
    n, c, h, w = x.shape
    oh, ow = kv["out"].shape[2:]
    want = np.empty((n, c, oh, ow))
    with np.errstate(all="ignore"):
        for i in range(oh):
            for j in range(ow):
                r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
                c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
                want[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) if (r1 > r0 and c1 > c0) else np.nan
    _avg_compare(case, "adaptive_avg_pool2d against NumPy", outs["out"], want.astype(np.float32), kv)


op("adaptive_avg_pool2d_fwd", fast=_C.adaptive_avg_pool2d_fwd, ref=_C.adaptive_avg_pool2d_fwd_ref, ref_float64=True, outputs=("out",),
   names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("x",), oracle=_adaptive_oracle,
   text="_C.adaptive_avg_pool2d_fwd")
op("adaptive_avg_pool2d_bwd", fast=_C.adaptive_avg_pool2d_bwd, ref=_C.adaptive_avg_pool2d_bwd_ref, ref_float64=True,
   outputs=("out",), names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("dy",),
   text="_C.adaptive_avg_pool2d_bwd")


def _max_pool_api(ref):
    def call(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if ref:
            y, idx = kpool.max_pool2d_fwd_ref(input, kernel_size, stride, padding, dilation, ceil_mode)
            return (y, idx) if return_indices else y
        return kpool.max_pool2d_fwd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    return call


op("kernels.max_pool2d_fwd", fast=_max_pool_api(False), ref=_max_pool_api(True), keywords=True, names=_POOL_NAMES,
   finite_inputs=("input",), text="kernels.pool2d.max_pool2d_fwd")
op("kernels.max_pool2d_bwd", fast=kpool.max_pool2d_bwd, ref=kpool.max_pool2d_bwd_ref, keywords=True,
   names=_POOL_NAMES, value_errors=("is outside the input plane",), compare=_avg_compare,
   finite_inputs=("grad_output",), text="kernels.pool2d.max_pool2d_bwd")
op("kernels.avg_pool2d_fwd", fast=kpool.avg_pool2d_fwd, ref=kpool.avg_pool2d_fwd_ref, keywords=True,
   names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("input",), text="kernels.pool2d.avg_pool2d_fwd")
op("kernels.avg_pool2d_bwd", fast=kpool.avg_pool2d_bwd, ref=kpool.avg_pool2d_bwd_ref, keywords=True,
   names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("grad_output",), text="kernels.pool2d.avg_pool2d_bwd")
op("kernels.adaptive_avg_pool2d_fwd", fast=kpool.adaptive_avg_pool2d_fwd, ref=kpool.adaptive_avg_pool2d_fwd_ref,
   keywords=True, names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("input",),
   text="kernels.pool2d.adaptive_avg_pool2d_fwd")
op("kernels.adaptive_avg_pool2d_bwd", fast=kpool.adaptive_avg_pool2d_bwd, ref=kpool.adaptive_avg_pool2d_bwd_ref,
   keywords=True, names=_POOL_NAMES, compare=_avg_compare, finite_inputs=("grad_output",),
   text="kernels.pool2d.adaptive_avg_pool2d_bwd")


# ------------------------------------------------------------------ softmax cross-entropy

_XENT_NAMES = ("logits", "target", "targets", "weight", "label_smoothing", "ignore_index", "out_lse", "out_nll", "out_smooth",
               "lse", "scale", "out", "grad_output", "reduction", "classes", "hidden", "bias", "class_weight",
               "chunk_bytes")


def _xent_rows(z, t, w, eps, ignore_index):
    """Per-row lse, nll and smooth of the contract, in float64 (NumPy)."""
    z = z.astype(np.float64)
    b, v = z.shape
    w64 = np.ones(v) if w is None else w.astype(np.float64)
    with np.errstate(all="ignore"):
        # Literally max + log(sum(exp(z - max))) in IEEE arithmetic, as log_softmax computes it:
        # a row holding NaN or +inf is NaN throughout, one holding only -inf too.
        m = z.max(axis=1, keepdims=True) if v else np.zeros((b, 1))
        lse = (np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]) if v else np.full(b, -np.inf)
        d = lse[:, None] - z
        if t.ndim == 2:
            q = (1 - eps) * t.astype(np.float64) + eps / v
            nll = (w64 * q * d).sum(axis=1)
            smooth = np.zeros(b)
        else:
            nll = np.zeros(b)
            for r in range(b):
                if int(t[r]) != ignore_index and 0 <= int(t[r]) < v:
                    nll[r] = w64[t[r]] * d[r, t[r]]
            smooth = (w64 * d).sum(axis=1) if eps > 0 else np.zeros(b)
            ign = np.array([int(x) == ignore_index for x in t], bool)
            smooth[ign] = 0.0
            nll[ign] = 0.0
    return lse, nll, smooth


def _xent_fwd_compare(case, what, got, want, kv):
    if got is None or np.ndim(got) != 1:
        return assert_close(what, got, want)
    z = kv["logits"]
    v = max(z.shape[1], 1)
    wmax = 1.0 if kv["weight"] is None else finite0(kv["weight"]).max(initial=0.0)
    scale = finite0(z).max(initial=0.0) + 1.0
    assert_close(what, got, want, atol=8 * (v + 3) * U32 * scale * (wmax + 1.0) * v, rtol=1e-6)


def _xent_fwd_oracle(case, kv, outs):
    lse, nll, smooth = _xent_rows(kv["logits"], kv["target"], kv["weight"], kv["label_smoothing"],
                                  kv["ignore_index"])
    # A row holding an infinity has no single right answer (log_softmax gives NaN, logsumexp
    # +-inf): only the reference decides those rows (rule 3); NumPy checks the others.
    z = kv["logits"]
    inf_rows = np.isinf(z).any(axis=1) & ~np.isnan(z).any(axis=1) if z.size else np.zeros(z.shape[0], bool)
    lse, nll, smooth = (np.where(inf_rows, np.asarray(outs[k], np.float64), v) for k, v in
                        (("out_lse", lse), ("out_nll", nll), ("out_smooth", smooth)))
    _xent_fwd_compare(case, "lse against NumPy", outs["out_lse"], lse, kv)
    _xent_fwd_compare(case, "nll against NumPy", outs["out_nll"], nll, kv)
    if kv["target"].ndim == 1 and kv["label_smoothing"] > 0:
        _xent_fwd_compare(case, "smooth against NumPy", outs["out_smooth"], smooth, kv)


op("cross_entropy_fwd", fast=_C.cross_entropy_fwd, ref=_C.cross_entropy_fwd_ref, ref_float64=True,
   outputs=("out_lse", "out_nll", "out_smooth"),
   names=_XENT_NAMES, value_errors=("is neither a class",), compare=_xent_fwd_compare,
   finite_inputs=("logits", "target", "weight"), oracle=_xent_fwd_oracle, text="_C.cross_entropy_fwd")


def _xent_bwd_compare(case, what, got, want, kv):
    if got is None or np.ndim(got) != 2:
        return assert_close(what, got, want)
    s = finite0(kv["scale"]).max(initial=0.0)
    wmax = 1.0 if kv["weight"] is None else finite0(kv["weight"]).max(initial=0.0)
    assert_close(what, got, want, atol=16 * U32 * s * (wmax + 1.0) * (kv["logits"].shape[1] + 1) + 1e-30, rtol=1e-5)


op("cross_entropy_bwd", fast=_C.cross_entropy_bwd, ref=_C.cross_entropy_bwd_ref, ref_float64=True, outputs=("out",),
   names=_XENT_NAMES,
   value_errors=("is neither a class",), compare=_xent_bwd_compare,
   finite_inputs=("logits", "target", "weight", "lse", "scale"), text="_C.cross_entropy_bwd")


def _xent_api_compare(case, what, got, want, kv):
    if isinstance(want, tuple):
        for i, (g, w) in enumerate(zip(got, want)):
            _xent_api_compare(case, f"{what}[{i}]", g, w, kv)
        return
    if want is None:
        return assert_close(what, got, want)
    w = np.asarray(want)
    if w.dtype.kind != "f":
        return assert_close(what, got, want)
    scale = finite0(w).max(initial=0.0) + 1.0
    z = kv.get("logits", kv.get("hidden"))
    v = z.shape[1] if isinstance(z, np.ndarray) and z.ndim == 2 else 1
    assert_close(what, got, want, atol=64 * (v + 3) * U32 * scale, rtol=1e-5)


def _xent_api_oracle(case, kv, outs):
    """PyTorch's F.cross_entropy in NumPy, with the targets read as Python integers."""
    z = kv["logits"]
    t = kv["target"]
    if not (isinstance(z, np.ndarray) and z.ndim == 2 and isinstance(t, np.ndarray)):
        return
    ignore = int(kv.get("ignore_index", -100))
    eps = float(kv.get("label_smoothing", 0.0))
    red = kv.get("reduction", "mean")
    w = kv.get("weight")
    if t.ndim == 1:
        vals = [int(x) for x in t.tolist()]
        bad = [r for r, c in enumerate(vals) if c != ignore and not 0 <= c < z.shape[1]]
        if bad:
            fail(f"returned a loss although target[{bad[0]}] = {vals[bad[0]]} is neither a class in "
                 f"[0, {z.shape[1]}) nor ignore_index ({ignore})")
        tt = np.array([c if 0 <= c < z.shape[1] else 0 for c in vals], np.int64)
        lse, nll, smooth = _xent_rows(z, tt, w, eps, 10**30)
        ign = np.array([c == ignore for c in vals], bool)
        rows = (1 - eps) * nll + (eps / max(z.shape[1], 1)) * smooth
        rows[ign] = 0.0
        w64 = np.ones(z.shape[1]) if w is None else w.astype(np.float64)
        denom = float(w64[tt[~ign]].sum()) if ign.size else 0.0
    else:
        lse, rows, _ = _xent_rows(z, t, w, eps, ignore)
        denom = float(z.shape[0])
    with np.errstate(all="ignore"):  # the loss has the logits' dtype (float64 logits run on the reference)
        want = rows.astype(z.dtype) if red == "none" else z.dtype.type(rows.sum() if red == "sum" else
                                                                       rows.sum() / denom)
    got = outs["return"][0] if isinstance(outs["return"], tuple) else outs["return"]
    _xent_api_compare(case, "the loss against NumPy", got, np.asarray(want), kv)


def _xent_api(fn):
    def call(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
             return_lse=False):
        return fn(logits, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                  reduction=reduction, return_lse=return_lse)
    return call


op("kernels.cross_entropy_fwd", fast=_xent_api(kxent.cross_entropy_fwd), ref=_xent_api(kxent.cross_entropy_fwd_ref),
   keywords=True, names=_XENT_NAMES, value_errors=("is neither a class",), compare=_xent_api_compare,
   finite_inputs=("logits", "weight"), finite_outputs=(), oracle=_xent_api_oracle,
   text="kernels.cross_entropy.cross_entropy_fwd")


def _xent_bwd_api(fn):
    def call(logits, target, lse, grad_output=1.0, weight=None, ignore_index=-100, label_smoothing=0.0,
             reduction="mean", out=None):
        return fn(logits, target, lse, grad_output, weight=weight, ignore_index=ignore_index,
                  label_smoothing=label_smoothing, reduction=reduction, out=out)
    return call


op("kernels.cross_entropy_bwd", fast=_xent_bwd_api(kxent.cross_entropy_bwd),
   ref=_xent_bwd_api(kxent.cross_entropy_bwd_ref), keywords=True, outputs=("out",), names=_XENT_NAMES,
   value_errors=("is neither a class",), compare=_xent_api_compare, finite_inputs=("logits", "weight", "lse"),
   finite_outputs=(), text="kernels.cross_entropy.cross_entropy_bwd")


def _linear_xent(hidden, weight, target, bias=None, class_weight=None, ignore_index=-100, label_smoothing=0.0,
                 reduction="mean", chunk_bytes=64 << 20):
    return kxent.linear_cross_entropy(hidden, weight, target, bias, class_weight=class_weight,
                                    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                                    chunk_bytes=chunk_bytes)


def _linear_xent_ref(hidden, weight, target, bias=None, class_weight=None, ignore_index=-100, label_smoothing=0.0,
                     reduction="mean", chunk_bytes=64 << 20):
    """The unfused path through the references: logits by gemm_ref, loss and gradient by the
    cross-entropy references, the gradients by gemm_ref."""
    if int(chunk_bytes) < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes!r}")
    logits = kgemm.gemm_ref(hidden, weight, trans_b=True, bias=bias)
    loss, lse = kxent.cross_entropy_fwd_ref(logits, target, weight=class_weight, ignore_index=ignore_index,
                                            label_smoothing=label_smoothing, reduction=reduction, return_lse=True)
    dz = kxent.cross_entropy_bwd_ref(logits, target, lse, 1.0, weight=class_weight, ignore_index=ignore_index,
                                     label_smoothing=label_smoothing, reduction=reduction)
    d_hidden = kgemm.gemm_ref(dz, np.ascontiguousarray(weight))
    d_weight = kgemm.gemm_ref(dz, np.ascontiguousarray(hidden), trans_a=True)
    d_bias = dz.astype(np.float64).sum(axis=0).astype(np.float32) if bias is not None else None
    return loss, d_hidden, d_weight, d_bias


op("kernels.linear_cross_entropy", fast=_linear_xent, ref=_linear_xent_ref, keywords=True, names=_XENT_NAMES,
   value_errors=("is neither a class",), compare=_xent_api_compare, finite_inputs=None, same_errors=False,
   text="kernels.cross_entropy.linear_cross_entropy")


# ------------------------------------------------------------------ optimizer steps

_OPTIM_NAMES = ("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs", "momentum_buffers", "steps", "lr",
                "beta1", "beta2", "eps", "weight_decay", "momentum", "dampening", "optimizer state")


def _decay_condition(kv, i):
    """Per element, how much Adam's update amplifies float32 rounding of the gradient: with
    coupled weight decay g + wd * p cancels where g is about -wd * p, and the update divides by
    sqrt(v), v ~ (g + wd * p)^2 when beta2 is small, so its relative error is the sum's:
    (|g| + |wd * p|) / |g + wd * p| float32 roundings (1 without coupled decay)."""
    wd = float(np.float32(kv.get("weight_decay") or 0.0))
    if kv.get("decoupled", True) or not wd or kv.get("exp_avg_sqs") is None:
        return 1.0
    p = kv["params"][i].astype(np.float64).ravel()
    g = kv["grads"][i].astype(np.float64).ravel()
    with np.errstate(all="ignore"):
        cond = (np.abs(g) + np.abs(wd * p)) / np.abs(g + wd * p)
    return np.where(np.isfinite(cond), np.maximum(cond, 1.0), 1.0)


def _optim_compare(case, what, got, want, kv):
    if got is None or np.ndim(got) == 0 and not isinstance(got, np.ndarray):
        return assert_close(what, got, want)
    w = np.asarray(want)
    scale = finite0(w).max(initial=0.0)
    atol = 8 * U32 * scale + 1e-30
    moment = re.search(r"exp_avgs\[(\d+)\]", what)
    if moment:  # m + (1 - b1)(g - m) in float cancels when g is about -m: its rounding is the terms'
        i = int(moment.group(1))
        scale = max(scale, finite0(kv["exp_avgs"][i]).max(initial=0.0), finite0(kv["grads"][i]).max(initial=0.0))
        atol = 8 * U32 * scale + 1e-30
    param = re.search(r"(?:^|\s)params\[(\d+)\]$", what)
    if param and kv.get("exp_avg_sqs") is not None:  # the update's rounding, amplified by a cancelling decay
        i = int(param.group(1))
        step = finite0(w.astype(np.float64).ravel() - kv["params"][i].astype(np.float64).ravel())
        atol = atol + (8 * U32 * step * _decay_condition(kv, i)).reshape(w.shape)
    assert_close(what, got, want, atol=atol, rtol=1e-5)


def _adam_oracle(case, kv, outs):
    """The contract's formulas in float64 from the float32 hyper-parameters, per parameter; the
    moments rounded to the float32 they are stored in before the update reads them."""
    f = lambda x: float(np.float32(x))  # noqa: E731 - the binding passes float32 hyper-parameters
    lr, b1, b2, eps, wd = (f(kv[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))
    if not all(math.isfinite(x) for x in (lr, b1, b2, eps, wd)) or not (0 <= b1 < 1 and 0 <= b2 < 1) or eps <= 0:
        return
    for i, param in enumerate(kv["params"]):
        t = kv["steps"][i]
        if not isinstance(t, int) or not 1 <= t <= 10**6:
            continue
        p = param.astype(np.float64).ravel()
        g = kv["grads"][i].astype(np.float64).ravel()
        m = kv["exp_avgs"][i].astype(np.float64).ravel()
        v = kv["exp_avg_sqs"][i].astype(np.float64).ravel()
        if not (np.isfinite(p).all() and np.isfinite(g).all() and np.isfinite(m).all() and np.isfinite(v).all()):
            continue
        g = -g if kv["maximize"] else g
        if kv["decoupled"]:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        with np.errstate(over="ignore"):  # the moments are float32 state, read back as stored
            m = (m + (1 - b1) * (g - m)).astype(np.float32).astype(np.float64)
            v = (b2 * v + (1 - b2) * g * g).astype(np.float32).astype(np.float64)
        vv = v
        if kv["max_exp_avg_sqs"] is not None:
            vv = np.maximum(kv["max_exp_avg_sqs"][i].astype(np.float64).ravel(), v)
        p = p - (lr / (1 - b1**t)) * m / (np.sqrt(vv) / math.sqrt(1 - b2**t) + eps)
        got = outs[f"params[{i}]"].astype(np.float64).ravel()
        step = np.abs(p - param.astype(np.float64).ravel())
        tol = (1e-4 + 8 * U32 * _decay_condition(kv, i)) * step + 4 * U32 * np.abs(p) + 1e-30
        assert_close(f"params[{i}] against the formula", got, p, atol=tol)


_ADAM_OUT = ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")
op("adam_step", fast=_C.adam_step, ref=_C.adam_step_ref, outputs=_ADAM_OUT, names=_OPTIM_NAMES,
   compare=_optim_compare, finite_inputs=None, oracle=_adam_oracle, text="_C.adam_step")
op("sgd_step", fast=_C.sgd_step, ref=_C.sgd_step_ref, outputs=("params", "momentum_buffers"), names=_OPTIM_NAMES,
   compare=_optim_compare, finite_inputs=None, text="_C.sgd_step")
op("kernels.adam_step", fast=kopt.adam_step, ref=lambda *a, **kw: kopt.adam_step(*a, reference=True, **kw),
   keywords=True, outputs=_ADAM_OUT, names=_OPTIM_NAMES, compare=_optim_compare, finite_inputs=None,
   oracle=_adam_oracle, text="kernels.optim_step.adam_step")
op("kernels.sgd_step", fast=kopt.sgd_step, ref=lambda *a, **kw: kopt.sgd_step(*a, reference=True, **kw),
   keywords=True, outputs=("params", "momentum_buffers"), names=_OPTIM_NAMES, compare=_optim_compare,
   finite_inputs=None, text="kernels.optim_step.sgd_step")


# ------------------------------------------------------------------ elementwise

_ELT_NAMES = ("input", "out", "grad_output", "output")


def _relu_oracle(case, kv, outs):
    x = kv["input"]
    with np.errstate(invalid="ignore"):
        want = np.where(np.isnan(x), x, np.maximum(x, 0))
    assert_close("relu against NumPy", outs["out"] if "out" in outs else outs["return"], want.astype(x.dtype))


def _relu_bwd_oracle(case, kv, outs):
    g, y = kv["grad_output"], kv["output"]
    with np.errstate(invalid="ignore"):
        want = np.where(y <= 0, 0, g).astype(g.dtype)  # a NaN output passes the gradient, as PyTorch's
    assert_close("relu_bwd against NumPy", outs["out"] if "out" in outs else outs["return"], want)


def _erf_oracle(case, kv, outs):
    x = kv["input"]
    want = np.array([math.erf(v) for v in x.astype(np.float64).ravel()], np.float64).reshape(x.shape)
    tight = x.dtype == np.float64
    assert_close("erf against math.erf", outs["out"] if "out" in outs else outs["return"], want.astype(x.dtype),
                 atol=1e-15 if tight else 1e-7, rtol=4e-15 if tight else 4 * U32)


op("relu_fwd", fast=_C.relu_fwd, outputs=("out",), names=_ELT_NAMES, finite_inputs=("input",), oracle=_relu_oracle,
   text="_C.relu_fwd")
op("relu_bwd", fast=_C.relu_bwd, outputs=("out",), names=_ELT_NAMES, finite_inputs=("grad_output", "output"),
   oracle=_relu_bwd_oracle, text="_C.relu_bwd")
op("erf", fast=_C.erf, outputs=("out",), names=_ELT_NAMES, finite_inputs=("input",), oracle=_erf_oracle,
   text="_C.erf")
op("kernels.relu_fwd", fast=kelt.relu_fwd, keywords=True, outputs=("out",), names=_ELT_NAMES,
   finite_inputs=("input",), oracle=_relu_oracle, text="kernels.eltwise.relu_fwd")
op("kernels.relu_bwd", fast=kelt.relu_bwd, keywords=True, outputs=("out",), names=_ELT_NAMES,
   finite_inputs=("grad_output", "output"), oracle=_relu_bwd_oracle, text="kernels.eltwise.relu_bwd")
op("kernels.erf", fast=kelt.erf, keywords=True, outputs=("out",), names=_ELT_NAMES, finite_inputs=("input",),
   oracle=_erf_oracle, text="kernels.eltwise.erf")


# ------------------------------------------------------------------ quantized matmul

_Q_NAMES = ("input", "weight", "weight data", "data", "scales", "colsum", "bias", "out", "group_size", "N", "K",
            "shape", "bits", "w", "x")
op("qmatmul_int8", fast=_C.qmatmul_int8, ref=_C.qmatmul_int8_ref, outputs=("out",), names=_Q_NAMES,
   value_errors=("NaN",), finite_inputs=("x", "bias", "scales"), text="_C.qmatmul_int8")
op("qmatmul_int4", fast=_C.qmatmul_int4, ref=_C.qmatmul_int4_ref, outputs=("out",), names=_Q_NAMES,
   value_errors=("NaN",), finite_inputs=("x", "bias", "scales"), text="_C.qmatmul_int4")


def _qmatmul_api(reference):
    def call(w, x, bits=8, group_size=32, bias=None, out=None):
        qw = quant.quantize_weight(w, bits, group_size)
        return qw.matmul(x, bias, out, reference=reference)
    return call


op("quant.matmul", fast=_qmatmul_api(False), ref=_qmatmul_api(True), keywords=True, outputs=("out",),
   names=_Q_NAMES, value_errors=("NaN",), finite_inputs=("w", "x", "bias"),
   text="(lambda w, x, bits, group_size, bias, out: quant.quantize_weight(w, bits, group_size).matmul(x, bias, out))")


def _qweight_api(reference):
    def call(bits, shape, data, scales, colsum, group_size, x, bias=None):
        qw = quant.QuantizedWeight(bits, shape, data, scales, colsum, group_size)
        return qw.matmul(x, bias, reference=reference)
    return call


op("quant.QuantizedWeight", fast=_qweight_api(False), ref=_qweight_api(True), keywords=True, names=_Q_NAMES,
   value_errors=("NaN",), finite_inputs=None,
   text="(lambda bits, shape, data, scales, colsum, group_size, x, bias: quant.QuantizedWeight(bits, shape, data, "
        "scales, colsum, group_size).matmul(x, bias))")


# ------------------------------------------------------------------ memory and runtime controls


def _empty(shape, dtype):
    dims = shape
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        dims = (shape,)  # an int is a 1-D shape, as in NumPy
    try:
        want_dtype = np.dtype(dtype)
        nbytes = int(np.prod([int(d) for d in dims], dtype=object)) * want_dtype.itemsize
    except (TypeError, ValueError, OverflowError):
        want_dtype, nbytes = None, 0
    if want_dtype is not None and want_dtype.hasobject and 0 < nbytes <= 64 << 20:
        # Leave a block of that size, full of non-zero bytes, in the host cache first: memory
        # handed out again must still make valid object references.
        junk = _C.empty([nbytes], np.uint8)
        junk[:] = 0x5A
        del junk
    a = _C.empty(shape, dtype)
    want_dtype = np.dtype(dtype)
    if not isinstance(a, np.ndarray) or a.dtype != want_dtype or a.shape != tuple(int(d) for d in dims):
        fail(f"empty({shape!r}, {dtype!r}) returned {type(a).__name__} {getattr(a, 'dtype', '')} "
             f"{getattr(a, 'shape', '')}")
    if not (a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
        fail(f"empty({shape!r}, {dtype!r}) returned an array with flags {a.flags}")
    if a.dtype.hasobject:
        a.tolist()  # every element must be a valid reference
    elif a.nbytes <= 64 << 20 and a.size:
        a.view(np.uint8).reshape(-1)[:] = 0x5A  # every byte must be writable memory
    return ("array", a.shape, str(a.dtype))


def _runtime(action, value):
    """One runtime control with an arbitrary argument: it takes effect (and reads back) or raises
    a named error and changes nothing."""
    before = (_C.get_num_threads(), _C.get_isa(), _C.host_cache_stats()["limit_bytes"])
    try:
        if action == "set_num_threads":
            ember.set_num_threads(value)
            if _C.get_num_threads() != value:
                fail(f"set_num_threads({value!r}) then get_num_threads() = {_C.get_num_threads()}")
        elif action == "_C.set_num_threads":
            _C.set_num_threads(value)
            if _C.get_num_threads() != value:
                fail(f"_C.set_num_threads({value!r}) then get_num_threads() = {_C.get_num_threads()}")
        elif action in ("set_isa", "_C.set_isa"):
            (ember.set_isa if action == "set_isa" else _C.set_isa)(value)
            if _C.get_isa() != value:
                fail(f"{action}({value!r}) then get_isa() = {_C.get_isa()!r}")
        elif action in ("set_host_cache_limit", "_C.host_cache_set_limit"):
            (ember.set_host_cache_limit if action == "set_host_cache_limit" else _C.host_cache_set_limit)(value)
            if _C.host_cache_stats()["limit_bytes"] != value:
                fail(f"{action}({value!r}) then limit_bytes = {_C.host_cache_stats()['limit_bytes']}")
            _C.host_cache_clear()
        elif action == "measure_fma_peak":
            r = _C.measure_fma_peak(*value)
            if not (isinstance(r, float) and r > 0 and math.isfinite(r)):
                fail(f"measure_fma_peak{value!r} returned {r!r}")
        else:
            raise ValueError(action)
    except ALLOWED:
        after = (_C.get_num_threads(), _C.get_isa(), _C.host_cache_stats()["limit_bytes"])
        if after != before:
            fail(f"{action}({value!r}) raised but changed the settings from {before} to {after}")
        raise
    finally:
        _C.set_num_threads(before[0])
        _C.set_isa(before[1])
        _C.host_cache_set_limit(before[2])
    return "ok"


def _bandwidth(buffer, repeats=1, threads=0):
    r = _C.measure_read_bandwidth(buffer, repeats, threads)
    if not (isinstance(r, float) and r >= 0 and not math.isnan(r)):
        fail(f"measure_read_bandwidth returned {r!r}")
    return "ok"


op("empty", fast=_empty, names=("shape", "dtype", "data type", "array", "dimensions", "size"), finite_inputs=None,
   text="_C.empty")
op("runtime", fast=_runtime, names=("n", "name", "bytes", "nbytes", "limit", "threads", "seconds", "isa", "ISA",
                                    "EMBER_ISA"), finite_inputs=None, text="fuzz_ops._runtime")
op("measure_read_bandwidth", fast=_bandwidth, names=("buffer", "repeats", "threads"), finite_inputs=None,
   text="_C.measure_read_bandwidth")
