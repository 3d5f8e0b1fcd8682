"""Hypothesis strategies that generate cases (see fuzz_harness) for every function under test.

Each strategy draws a geometry (sizes including 0 and 1, the shapes the kernels special-case),
then its arrays, each placed in the case's one buffer with a layout: contiguous, Fortran order,
stepped (positive or negative steps), reversed, broadcast (zero strides), strides that are not
multiples of the item size, misaligned, or extent-1 dimensions with arbitrary strides. Outputs
may alias inputs (the same view, a shifted or reversed overlap). Parameters may be replaced by
"giant" integers (2**31, 2**61, 2**62, 2**63 - 1, negative, beyond 64 bits), arrays by other
dtypes (float16/64, ints, bool, complex, object) or non-arrays, and values by NaN and inf.

Most cases are valid, so that results are compared; shrinking moves towards valid, small,
contiguous cases, so a failure shrinks to the one thing that matters.
"""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import strategies as st

import ember
from fuzz_harness import Arr, Case, Obj

# Every ISA the CPU supports, or only EMBER_ISA's when it is set (to fuzz one path at a time).
ISAS = (os.environ["EMBER_ISA"],) if os.environ.get("EMBER_ISA") else tuple(ember.available_isas())
THREADS = (1, 2, 3)
GIANT = (2**31, 2**61, 2**62, 2**63 - 1, -1, 2**63, 2**64, 2**32, 2**31 - 1, -(2**31), -(2**63), -(2**63) - 1,
         -(2**62), 0, 2**100)
BAD_DTYPES = ("float64", "float16", "int32", "int64", "uint8", "bool", "complex64", "object", "list", "int8",
              "uint64")
FLOAT_FILLS = (("ints",), ("gauss",), ("special",), ("ints",), ("huge",), ("zeros",))
LAYOUTS = ("c", "step", "neg", "f", "zero", "odd", "mis", "ext1")
ONE_ROW_LAYOUTS = ("step", "neg", "ext1", "zero", "f", "odd")


def _c_strides(shape, itemsize):
    strides, acc = [], itemsize
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return list(reversed(strides))


class Space:
    """Places arrays in one buffer, with gaps (canaries) between them."""

    def __init__(self, draw, weird_pct: int):
        self.draw = draw
        self.weird_pct = weird_pct
        self.cursor = draw(st.integers(0, 16)) * 4

    def _gap(self) -> int:
        return self.draw(st.integers(1, 12)) * 4

    def _strides(self, kind, shape, itemsize):
        d = self.draw
        strides = _c_strides(shape, itemsize)
        mis = 0
        nd = len(shape)
        if kind == "f" and nd:
            strides = list(reversed(_c_strides(list(reversed(shape)), itemsize)))
        elif kind == "step" and nd:
            steps = [d(st.sampled_from((1, 2, 3, -1, -2))) for _ in shape]
            # base[::s0, ::s1, ...] of a C-contiguous base |s| times larger in each dimension
            big = _c_strides([n * abs(s) for n, s in zip(shape, steps)], itemsize)
            strides = [b * s for b, s in zip(big, steps)]
        elif kind == "neg" and nd:
            flip = d(st.lists(st.booleans(), min_size=nd, max_size=nd))
            if not any(flip):
                flip[-1] = True
            strides = [-s if f else s for s, f in zip(strides, flip)]
        elif kind == "zero" and nd:
            z = d(st.lists(st.booleans(), min_size=nd, max_size=nd))
            if not any(z):
                z[0] = True
            strides = [0 if f else s for s, f in zip(strides, z)]
        elif kind == "odd" and nd:
            strides = _c_strides(shape, itemsize + d(st.integers(1, 3)))
            mis = d(st.integers(0, 3))
        elif kind == "mis":
            mis = d(st.integers(1, max(1, itemsize - 1))) if itemsize > 1 else 0
        elif kind == "ext1" and nd:
            strides = [d(st.sampled_from((0, -itemsize, itemsize * 1000, -itemsize * 77, 3))) if n == 1 else s
                       for n, s in zip(shape, strides)]
        return strides, mis

    def _place(self, shape, dtype, strides, mis, fill, readonly, at=None) -> Arr:
        itemsize = np.dtype(dtype).itemsize
        if 0 in shape:
            lo = hi = 0
        else:
            lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
            hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + itemsize
        if at is None:
            align = max(min(itemsize, 16), 4)
            start = -(-self.cursor // align) * align
            offset = start - lo + mis
        else:
            offset = max(at, -lo)
        seed = self.draw(st.integers(0, 2**16))
        self.cursor = max(self.cursor, offset + hi + self._gap())
        return Arr(dtype, tuple(int(n) for n in shape), tuple(int(s) for s in strides), int(offset), fill, seed,
                   readonly)

    def array(self, shape, dtype="float32", fill=("ints",), *, weird=None, kinds=LAYOUTS, readonly=False) -> Arr:
        """An array of this shape and dtype; its layout is contiguous unless this case is weird."""
        if weird is None:
            weird = self.draw(st.integers(0, 99)) < self.weird_pct
        kind = self.draw(st.sampled_from(kinds)) if weird else "c"
        strides, mis = self._strides(kind, list(shape), np.dtype(dtype).itemsize)
        return self._place(shape, dtype, strides, mis, fill, readonly)

    def alias(self, of: Arr, shape, dtype="float32", fill=("none",)) -> Arr:
        """An array overlapping `of`: the same view, shifted, or reversed."""
        kind = self.draw(st.sampled_from(("same", "shift", "rev", "inside")))
        itemsize = np.dtype(dtype).itemsize
        if kind == "same" and tuple(shape) == of.shape and dtype == of.dtype:
            return Arr(dtype, of.shape, of.strides, of.offset, fill, 0, False)
        if kind == "rev" and tuple(shape) == of.shape and dtype == of.dtype and 0 not in shape:
            lo, hi = of.span()
            strides = [-s for s in of.strides]
            return self._place(shape, dtype, strides, 0, fill, False, at=of.offset + sum(
                (n - 1) * s for n, s in zip(of.shape, of.strides)))
        strides = _c_strides(list(shape), itemsize)
        shift = self.draw(st.integers(-3, 3)) * itemsize if kind == "shift" else self.draw(st.integers(0, 8)) * 4
        lo, _ = of.span()
        return self._place(shape, dtype, strides, 0, fill, False, at=max(0, lo + shift))

    @property
    def nbytes(self) -> int:
        return self.cursor + self.draw(st.integers(0, 8)) * 4


def bad_array(draw, sp: Space, shape, dtype="float32", fill=("ints",), bad_pct=0, **kw):
    """Usually sp.array(...); sometimes another dtype, a non-array, or another shape."""
    if draw(st.integers(0, 99)) >= bad_pct:
        return sp.array(shape, dtype, fill, **kw)
    what = draw(st.sampled_from(("dtype", "shape", "dtype", "none", "readonly")))
    if what == "dtype":
        dt = draw(st.sampled_from(BAD_DTYPES))
        if dt == "object":
            return Obj("object_array", tuple(shape))
        if dt == "list":
            return Obj("list", tuple(shape))
        if dt == dtype:
            dt = "float64"
        return sp.array(shape, dt, ("ints",), **kw)
    if what == "shape":
        return sp.array(draw(other_shape(tuple(shape))), dtype, fill, **kw)
    if what == "readonly":
        return sp.array(shape, dtype, fill, readonly=True, **kw)
    return draw(st.sampled_from((None, 1.5, Obj("scalar"), Obj("matrix", tuple(shape)))))


@st.composite
def other_shape(draw, shape):
    how = draw(st.sampled_from(("grow", "drop", "add", "shrink")))
    s = list(shape)
    if how == "grow" and s:
        i = draw(st.integers(0, len(s) - 1))
        s[i] += draw(st.integers(1, 2))
    elif how == "shrink" and s:
        i = draw(st.integers(0, len(s) - 1))
        s[i] = max(0, s[i] - 1) if s[i] else 1
    elif how == "drop" and s:
        s.pop(draw(st.integers(0, len(s) - 1)))
    else:
        s.insert(draw(st.integers(0, len(s))), draw(st.sampled_from((1, 2))))
    return tuple(s)


def pick(draw, normal, odd, pct):
    """One of `normal`, or (with probability pct %) one of `odd`: each argument goes wrong on
    its own, so that a case with one odd argument is common and one with all of them rare."""
    return draw(st.sampled_from(odd)) if draw(st.integers(0, 99)) < pct else draw(st.sampled_from(normal))


def maybe_giant(draw, value, pct):
    return draw(st.sampled_from(GIANT)) if draw(st.integers(0, 99)) < pct else value


@st.composite
def header(draw):
    """(isa, threads, weird_pct, bad_pct): how unusual this case's arrays and arguments are."""
    isa = draw(st.sampled_from(ISAS))
    threads = draw(st.sampled_from(THREADS))
    level = draw(st.integers(0, 9))
    weird = (0, 0, 0, 0, 15, 15, 40, 40, 80, 80)[level]
    bad = (0, 0, 0, 0, 0, 0, 0, 10, 25, 40)[level]
    return isa, threads, weird, bad


def _case(op, args, sp, isa, threads):
    return Case(op, tuple(args), sp.nbytes, isa, threads)


DIM = st.sampled_from((1, 2, 3, 0, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 48, 65, 130))
SMALL = st.sampled_from((1, 2, 3, 0, 4, 5))


# ------------------------------------------------------------------ GEMM


@st.composite
def gemm_cases(draw, api=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    m, k, n = draw(DIM), draw(DIM), draw(DIM)
    ta, tb = draw(st.booleans()), draw(st.booleans())
    fill = draw(st.sampled_from(FLOAT_FILLS[:4]))  # float32 accumulation overflows "huge" legitimately
    a = bad_array(draw, sp, (k, m) if ta else (m, k), fill=fill, bad_pct=bad)
    b = bad_array(draw, sp, (n, k) if tb else (k, n), fill=draw(st.sampled_from(FLOAT_FILLS[:4])), bad_pct=bad)
    alpha = pick(draw, (1.0, 0.5, -2.0, 0.0, 3.0, -1.0), (math.nan, 2**64, 2**1100), bad)
    beta = pick(draw, (0.0, 1.0, -0.25, 2.0, 0.5), (math.nan, 2**1100), bad)
    out_how = draw(st.sampled_from(("new", "out", "out", "alias")))
    if beta != 0.0 and out_how == "new" and not bad:
        out_how = "out"
    out_fill = ("none",) if beta == 0.0 else ("ints",)
    if out_how == "new":
        out = None
    elif out_how == "alias" and isinstance(a, Arr):
        out = sp.alias(draw(st.sampled_from([x for x in (a, b) if isinstance(x, Arr)])), (m, n), fill=out_fill)
    else:
        out = bad_array(draw, sp, (m, n), fill=out_fill, bad_pct=bad,
                        kinds=("step", "neg", "ext1", "zero", "c", "mis", "odd", "f"))
    bias = None if draw(st.booleans()) else bad_array(draw, sp, (n,), fill=("ints",), bad_pct=bad)
    relu = draw(st.booleans())
    args = [("a", a), ("b", b), ("out", out), ("alpha", alpha), ("beta", beta), ("trans_a", ta), ("trans_b", tb),
            ("bias", bias), ("relu", relu)]
    return _case("kernels.gemm" if api else "gemm", args, sp, isa, threads)


@st.composite
def matmul_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    m, k, n = draw(SMALL), draw(SMALL), draw(SMALL)
    batch_a = tuple(draw(st.lists(st.sampled_from((1, 2, 3)), max_size=2)))
    batch_b = tuple(draw(st.lists(st.sampled_from((1, 2, 3)), max_size=2)))
    a_shape = (k,) if draw(st.integers(0, 4)) == 0 else batch_a + (m, k)
    b_shape = (k,) if draw(st.integers(0, 4)) == 0 else batch_b + (k, n)
    a = bad_array(draw, sp, a_shape, fill=draw(st.sampled_from(FLOAT_FILLS[:4])), bad_pct=bad)
    b = bad_array(draw, sp, b_shape, fill=draw(st.sampled_from(FLOAT_FILLS[:4])), bad_pct=bad)
    out = None
    if draw(st.booleans()):
        try:
            shape = np.matmul(np.zeros(a_shape), np.zeros(b_shape)).shape  # zeros: no overflow from garbage
        except ValueError:
            shape = (m, n)
        out = bad_array(draw, sp, shape, fill=("none",), bad_pct=bad)
    return _case("kernels.matmul", [("a", a), ("b", b), ("out", out)], sp, isa, threads)


# ------------------------------------------------------------------ convolution


def _conv_out(size, k, pad0, pad1, stride, dil):
    eff = dil * (k - 1) + 1
    return (size + pad0 + pad1 - eff) // stride + 1


@st.composite
def conv_geometry(draw, bad):
    """(n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, oh, ow) aimed at each algorithm."""
    path = draw(st.sampled_from(("any", "winograd", "pertap", "direct", "depthwise", "implicit")))
    groups = draw(st.sampled_from((1, 2, 3)))
    n = draw(st.sampled_from((1, 2, 0, 3)))
    kh, kw = draw(st.sampled_from((3, 1, 2, 5))), draw(st.sampled_from((3, 1, 2, 5)))
    h, w = draw(st.sampled_from((5, 1, 2, 3, 4, 8, 9, 0, 11))), draw(st.sampled_from((5, 1, 2, 3, 4, 8, 9, 0, 11)))
    sh, sw = draw(st.sampled_from((1, 2, 3))), draw(st.sampled_from((1, 2, 3)))
    dh, dw = draw(st.sampled_from((1, 2, 3))), draw(st.sampled_from((1, 2, 3)))
    pt, pl = draw(st.sampled_from((0, 1, 2))), draw(st.sampled_from((0, 1, 2)))
    cg = draw(st.sampled_from((1, 2, 3, 0, 4, 16, 17)))
    og = draw(st.sampled_from((1, 2, 3, 16)))
    if path == "winograd":
        kh = kw = 3
        sh = sw = dh = dw = 1
        cg, og = draw(st.sampled_from((16, 17, 24))), draw(st.sampled_from((16, 17)))
        groups = min(groups, 2)
        n = min(n, 2)
    elif path == "pertap":
        cg = draw(st.sampled_from((16, 17)))
        groups, n = 1, min(n, 2)
    elif path == "direct":
        cg = draw(st.sampled_from((2, 3, 5, 15)))
        sh = sw = 1
    elif path == "depthwise":
        cg, og = 1, draw(st.sampled_from((1, 2)))
        groups = draw(st.sampled_from((1, 3, 4, 16)))
    elif path == "implicit":
        cg = draw(st.sampled_from((2, 3, 5)))
        sh = draw(st.sampled_from((2, 3)))
    if cg >= 16 and og >= 16:
        groups, n = 1, min(n, 2)
        h, w = min(h, 9), min(w, 9)
    pb, pr = pt + draw(st.sampled_from((0, 0, 1, -1))), pl + draw(st.sampled_from((0, 0, 1, -1)))
    # Giant values come independently of bad arrays, so that they reach the kernels.
    if draw(st.integers(0, 99)) < 20:
        which = draw(st.sampled_from(("sh", "sw", "pt", "pl", "dh", "dw", "groups", "pad+dil", "pad+dil")))
        g = draw(st.sampled_from(GIANT))
        if which == "pad+dil":  # both at once: a 3x3 window still fits, but its products overflow
            g = draw(st.sampled_from((2**61, 2**62, 2**60, 2**62 + 1, 2**63 - 1)))
            pt = pl = dh = dw = g
            pb, pr = pt, pl
            if draw(st.integers(0, 9)) < 7:
                kh = kw = 3
        else:
            locals_ = {"sh": sh, "sw": sw, "pt": pt, "pl": pl, "dh": dh, "dw": dw, "groups": groups}
            locals_[which] = g
            sh, sw, pt, pl, dh, dw, groups = (locals_[x] for x in ("sh", "sw", "pt", "pl", "dh", "dw", "groups"))
            pb, pr = (pt, pl) if which in ("pt", "pl") else (pb, pr)
    try:
        oh = _conv_out(h, kh, pt, pb, sh, dh)
        ow = _conv_out(w, kw, pl, pr, sw, dw)
    except ZeroDivisionError:
        oh = ow = 1
    if not (0 <= oh <= 24 and 0 <= ow <= 24) or (bad and draw(st.integers(0, 9)) == 0):
        oh, ow = draw(st.sampled_from((0, 1, 2, 3))), draw(st.sampled_from((0, 1, 2, 3)))
    gg = groups if isinstance(groups, int) and 1 <= groups <= 16 else 1
    return n, cg * gg, h, w, og * gg, kh, kw, sh, sw, pt, pl, dh, dw, groups, cg, oh, ow


@st.composite
def conv_fwd_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, cg, oh, ow = draw(conv_geometry(bad))
    x = bad_array(draw, sp, (n, c, h, w), fill=draw(st.sampled_from(FLOAT_FILLS[:3])), bad_pct=bad)
    wt = bad_array(draw, sp, (o, cg, kh, kw), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
    bias = None if draw(st.booleans()) else bad_array(draw, sp, (o,), fill=("ints",), bad_pct=bad)
    if bad and isinstance(x, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(x, (n, o, oh, ow))
    else:
        out = bad_array(draw, sp, (n, o, oh, ow), fill=("none",), bad_pct=bad)
    args = [("x", x), ("w", wt), ("bias", bias), ("out", out), ("sh", sh), ("sw", sw), ("pt", pt), ("pl", pl),
            ("dh", dh), ("dw", dw), ("groups", groups), ("relu", draw(st.booleans()))]
    return _case("conv2d_fwd", args, sp, isa, threads)


@st.composite
def conv_bwd_data_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, cg, oh, ow = draw(conv_geometry(bad))
    dy = bad_array(draw, sp, (n, o, oh, ow), fill=draw(st.sampled_from(FLOAT_FILLS[:3])), bad_pct=bad)
    wt = bad_array(draw, sp, (o, cg, kh, kw), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
    if bad and isinstance(dy, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(dy, (n, c, h, w))
    else:
        out = bad_array(draw, sp, (n, c, h, w), fill=("none",), bad_pct=bad)
    args = [("dy", dy), ("w", wt), ("out", out), ("sh", sh), ("sw", sw), ("pt", pt), ("pl", pl), ("dh", dh),
            ("dw", dw), ("groups", groups)]
    return _case("conv2d_bwd_data", args, sp, isa, threads)


@st.composite
def conv_bwd_weight_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, cg, oh, ow = draw(conv_geometry(bad))
    # No NaN or inf here: Winograd F(3x3, 2x2) mixes every input of a tile into every tap, and
    # the zero padding times an infinite gradient is NaN in one algorithm and absent in another,
    # so which taps come out non-finite is the algorithm's choice.
    x = bad_array(draw, sp, (n, c, h, w), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
    dy = bad_array(draw, sp, (n, o, oh, ow), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
    if bad and isinstance(x, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(x, (o, cg, kh, kw))
    else:
        out = bad_array(draw, sp, (o, cg, kh, kw), fill=("none",), bad_pct=bad)
    db = None if draw(st.booleans()) else bad_array(draw, sp, (o,), fill=("none",), bad_pct=bad)
    args = [("x", x), ("dy", dy), ("out", out), ("out_bias", db), ("sh", sh), ("sw", sw), ("pt", pt), ("pl", pl),
            ("dh", dh), ("dw", dw), ("groups", groups)]
    return _case("conv2d_bwd_weight", args, sp, isa, threads)


def _pair_arg(draw, values, bad):
    """A Python-API geometry argument: an int, a pair, a numpy int, or (when bad) anything."""
    v = draw(st.sampled_from(values))
    form = draw(st.integers(0, 9))
    if bad and form >= 7:
        return draw(st.sampled_from(GIANT + ((1, 2, 3), "same", "valid", "full", 1.5, True, None, (2**63, 1),
                                             (1, -1), [2, 2], np.int64(2), (np.int32(1), 2))))
    if form < 5:
        return v
    if form < 7 and not isinstance(v, str):
        w = draw(st.sampled_from(values))
        return (v, w) if not isinstance(w, str) else v
    return np.int64(v) if not isinstance(v, str) else v


@st.composite
def api_conv_cases(draw, which="fwd"):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w, o, kh, kw, *_rest = draw(conv_geometry(0))
    groups = _rest[-4]
    cg = c // groups if groups > 0 else c  # giant or zero groups: the weight keeps the input's channels
    stride = _pair_arg(draw, (1, 2, 3), bad)
    dilation = _pair_arg(draw, (1, 2), bad)
    padding = _pair_arg(draw, (0, 1, 2, "same", "valid"), bad)
    if draw(st.integers(0, 9)) == 0:  # a 3x3 window still fits, but its products overflow
        padding = dilation = draw(st.sampled_from((2**61, 2**62, 2**60, 2**63 - 1, 2**64)))
        if draw(st.integers(0, 9)) < 7:
            kh = kw = 3
    if bad and draw(st.integers(0, 9)) == 0:
        groups = draw(st.sampled_from(GIANT + (True, 1.0)))
    try:
        from ember.kernels import _geometry

        g = _geometry.conv2d_geometry((n, c, h, w), (o, cg, kh, kw), stride, padding, dilation, groups)
        oshape = g.output_shape if all(0 <= d <= 4096 for d in g.output_shape) else (n, o, 1, 1)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError):
        oshape = (n, o, 1, 1)
    fill = draw(st.sampled_from(FLOAT_FILLS[:3]))
    if which == "fwd":
        x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
        wt = bad_array(draw, sp, (o, cg, kh, kw), fill=("ints",), bad_pct=bad)
        bias = None if draw(st.booleans()) else bad_array(draw, sp, (o,), fill=("ints",), bad_pct=bad)
        args = [("input", x), ("weight", wt), ("bias", bias), ("stride", stride), ("padding", padding),
                ("dilation", dilation), ("groups", groups), ("relu", draw(st.booleans()))]
        return _case("kernels.conv2d_fwd", args, sp, isa, threads)
    shape_arg = (n, c, h, w) if which == "data" else (o, cg, kh, kw)
    if bad and draw(st.integers(0, 4)) == 0:
        shape_arg = draw(st.sampled_from(((n, c, h), (n, c, h, -1), (n, c, h, 2**63), "abcd", None, (n, c, h, w, 1),
                                          (n, c, h, 2**40), [n, c, h, w])))
    # No NaN or inf for the weight gradient (see conv_bwd_weight_cases).
    if which == "weight":
        fill = ("gauss",)
    dy = bad_array(draw, sp, oshape, fill=fill, bad_pct=bad)
    if which == "data":
        wt = bad_array(draw, sp, (o, cg, kh, kw), fill=("ints",), bad_pct=bad)
        args = [("grad_output", dy), ("weight", wt), ("input_shape", shape_arg), ("stride", stride),
                ("padding", padding), ("dilation", dilation), ("groups", groups)]
        return _case("kernels.conv2d_bwd_data", args, sp, isa, threads)
    x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
    args = [("input", x), ("grad_output", dy), ("weight_shape", shape_arg), ("stride", stride),
            ("padding", padding), ("dilation", dilation), ("groups", groups), ("bias", draw(st.booleans()))]
    return _case("kernels.conv2d_bwd_weight", args, sp, isa, threads)


# ------------------------------------------------------------------ pooling


def pool_out(size, k, pad, stride, dil, ceil_mode):
    num = size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@st.composite
def pool_params(draw, bad, dilation=True):
    kh, kw = draw(st.sampled_from((2, 1, 3, 4))), draw(st.sampled_from((2, 1, 3, 4)))
    sh, sw = draw(st.sampled_from((2, 1, 3))), draw(st.sampled_from((2, 1, 3)))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (draw(st.sampled_from((1, 2))), draw(st.sampled_from((1, 2)))) if dilation else (1, 1)
    p = {"kh": kh, "kw": kw, "sh": sh, "sw": sw, "ph": ph, "pw": pw, "dh": dh, "dw": dw}
    if draw(st.integers(0, 99)) < 20:  # independently of bad arrays, so that they reach the kernels
        which = draw(st.sampled_from(("kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "k+p", "pad")))
        if which == "k+p":  # a huge window clipped to a small plane
            p["kh"] = p["kw"] = draw(st.sampled_from((2**32, 2**31, 2**40, 2**62)))
            p["ph"] = p["pw"] = p["kh"] // 2
            p["sh"] = p["sw"] = 1
        elif which == "pad":  # padding larger than half the window (the native API does not forbid it)
            p["ph"] = p["kh"] + draw(st.integers(0, 2))
        else:
            p[which] = draw(st.sampled_from(GIANT))
        if not dilation:
            p["dh"] = p["dw"] = 1
    return p


@st.composite
def max_pool_fwd_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w = draw(SMALL), draw(SMALL), draw(DIM), draw(DIM)
    p = draw(pool_params(bad))
    ceil_mode = draw(st.booleans())
    try:
        oh = pool_out(h, p["kh"], p["ph"], p["sh"], p["dh"], ceil_mode)
        ow = pool_out(w, p["kw"], p["pw"], p["sw"], p["dw"], ceil_mode)
    except ZeroDivisionError:
        oh = ow = 1
    if not (0 <= oh <= 200 and 0 <= ow <= 200):
        oh, ow = draw(SMALL), draw(SMALL)
    x = bad_array(draw, sp, (n, c, h, w), fill=draw(st.sampled_from(FLOAT_FILLS)), bad_pct=bad)
    if bad and isinstance(x, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(x, (n, c, oh, ow))
    else:
        out = bad_array(draw, sp, (n, c, oh, ow), fill=("none",), bad_pct=bad)
    idx = None if draw(st.booleans()) else bad_array(draw, sp, (n, c, oh, ow), "int64", ("none",), bad_pct=bad)
    args = [("x", x), ("out", out), ("out_indices", idx)] + [(k, p[k]) for k in ("kh", "kw", "sh", "sw", "ph", "pw",
                                                                                "dh", "dw")]
    return _case("max_pool2d_fwd", args, sp, isa, threads)


@st.composite
def max_pool_bwd_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w = draw(SMALL), draw(SMALL), draw(DIM), draw(DIM)
    oh, ow = draw(SMALL), draw(SMALL)
    dy = bad_array(draw, sp, (n, c, oh, ow), fill=draw(st.sampled_from(FLOAT_FILLS[:3])), bad_pct=bad)
    extra = (-1, h * w, 2**62, -(2**63)) if bad else ()
    idx = bad_array(draw, sp, (n, c, oh, ow), "int64", ("labels", h * w) + extra, bad_pct=bad)
    if bad and isinstance(dy, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(dy, (n, c, h, w))
    else:
        out = bad_array(draw, sp, (n, c, h, w), fill=("none",), bad_pct=bad)
    return _case("max_pool2d_bwd", [("dy", dy), ("indices", idx), ("out", out)], sp, isa, threads)


@st.composite
def avg_pool_cases(draw, backward=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c, h, w = draw(SMALL), draw(SMALL), draw(DIM), draw(DIM)
    p = draw(pool_params(bad, dilation=False))
    ceil_mode = draw(st.booleans())
    try:
        oh = pool_out(h, p["kh"], p["ph"], p["sh"], 1, ceil_mode)
        ow = pool_out(w, p["kw"], p["pw"], p["sw"], 1, ceil_mode)
    except ZeroDivisionError:
        oh = ow = 1
    if not (0 <= oh <= 200 and 0 <= ow <= 200):
        oh, ow = draw(SMALL), draw(SMALL)
    params = [(k, p[k]) for k in ("kh", "kw", "sh", "sw", "ph", "pw")] + [("count_include_pad", draw(st.booleans()))]
    fill = draw(st.sampled_from(FLOAT_FILLS[:3] + (("zeros",),)))
    if not backward:
        x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
        out = bad_array(draw, sp, (n, c, oh, ow), fill=("none",), bad_pct=bad)
        return _case("avg_pool2d_fwd", [("x", x), ("out", out)] + params, sp, isa, threads)
    dy = bad_array(draw, sp, (n, c, oh, ow), fill=fill, bad_pct=bad)
    if bad and isinstance(dy, Arr) and draw(st.integers(0, 3)) == 0:
        out = sp.alias(dy, (n, c, h, w))
    else:
        out = bad_array(draw, sp, (n, c, h, w), fill=("none",), bad_pct=bad)
    return _case("avg_pool2d_bwd", [("dy", dy), ("out", out)] + params, sp, isa, threads)


@st.composite
def adaptive_cases(draw, backward=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c = draw(SMALL), draw(SMALL)
    h, w = draw(st.sampled_from((4, 1, 2, 3, 0, 5, 7, 9, 16))), draw(st.sampled_from((4, 1, 2, 3, 0, 5, 7, 9, 16)))
    oh, ow = draw(st.sampled_from((1, 2, 3, 5, 7, 0))), draw(st.sampled_from((1, 2, 3, 5, 7, 0)))
    fill = draw(st.sampled_from(FLOAT_FILLS[:3]))
    if not backward:
        x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
        out = bad_array(draw, sp, (n, c, oh, ow), fill=("none",), bad_pct=bad)
        return _case("adaptive_avg_pool2d_fwd", [("x", x), ("out", out)], sp, isa, threads)
    dy = bad_array(draw, sp, (n, c, oh, ow), fill=fill, bad_pct=bad)
    out = bad_array(draw, sp, (n, c, h, w), fill=("none",), bad_pct=bad)
    return _case("adaptive_avg_pool2d_bwd", [("dy", dy), ("out", out)], sp, isa, threads)


def _api_int(draw, values, bad, pair=True):
    return _pair_arg(draw, values, bad) if pair else draw(st.sampled_from(values))


@st.composite
def api_pool_cases(draw, which):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, c = draw(SMALL), draw(SMALL)
    h, w = draw(st.sampled_from((4, 1, 2, 3, 0, 5, 8, 9, 17))), draw(st.sampled_from((4, 1, 2, 3, 0, 5, 8, 9, 17)))
    # Averages of "huge" values overflow a float32 sum (the references sum in double).
    fill = draw(st.sampled_from(FLOAT_FILLS if which in ("max", "max_backward") else FLOAT_FILLS[:4]))
    k = _api_int(draw, (2, 1, 3), bad)
    stride = None if draw(st.booleans()) else _api_int(draw, (1, 2, 3), bad)
    padding = _api_int(draw, (0, 1), bad)
    if draw(st.integers(0, 9)) == 0:  # a huge window with half as much padding: clipped to the plane
        big = draw(st.sampled_from((2**32, 2**31, 2**40, 2**62, 2**63)))
        k, padding, stride = big, big // 2, draw(st.sampled_from((None, 1)))
    ceil_mode = draw(st.booleans())
    if which in ("max", "avg"):
        x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
        args = [("input", x), ("kernel_size", k), ("stride", stride), ("padding", padding)]
        if which == "max":
            args += [("dilation", _api_int(draw, (1, 2), bad)), ("ceil_mode", ceil_mode),
                     ("return_indices", draw(st.booleans()))]
            return _case("kernels.max_pool2d_fwd", args, sp, isa, threads)
        args += [("ceil_mode", ceil_mode), ("count_include_pad", draw(st.booleans()))]
        return _case("kernels.avg_pool2d_fwd", args, sp, isa, threads)
    if which == "adaptive":
        x = bad_array(draw, sp, (n, c, h, w), fill=fill, bad_pct=bad)
        size = _api_int(draw, (1, 2, 3, 5), bad)
        return _case("kernels.adaptive_avg_pool2d_fwd", [("input", x), ("output_size", size)], sp, isa, threads)
    in_shape = (n, c, h, w)
    if bad and draw(st.integers(0, 3)) == 0:
        in_shape = draw(st.sampled_from(((n, c, h), (n, c, -1, w), (n, c, 2**40, w), (n, c, 2**62, 2**62),
                                         "nchw", None, (n, c, h, w, 1))))
    if which == "adaptive_backward":
        oh, ow = draw(st.sampled_from((1, 2, 3, 0))), draw(st.sampled_from((1, 2, 3)))
        dy = bad_array(draw, sp, (n, c, oh, ow), fill=fill, bad_pct=bad)
        return _case("kernels.adaptive_avg_pool2d_bwd", [("grad_output", dy), ("input_shape", in_shape)], sp, isa,
                     threads)
    if which == "max_backward":
        oh, ow = draw(SMALL), draw(SMALL)
        dy = bad_array(draw, sp, (n, c, oh, ow), fill=fill, bad_pct=bad)
        extra = (-1, h * w, 2**62) if bad else ()
        idx = bad_array(draw, sp, (n, c, oh, ow), "int64", ("labels", max(h * w, 1)) + extra, bad_pct=bad)
        return _case("kernels.max_pool2d_bwd", [("grad_output", dy), ("indices", idx), ("input_shape", in_shape)],
                     sp, isa, threads)
    # avg_backward: grad_output must have the forward output's shape
    kk = k if isinstance(k, int) and not isinstance(k, bool) else 2
    ss = stride if isinstance(stride, int) and not isinstance(stride, bool) else kk
    pp = padding if isinstance(padding, int) and not isinstance(padding, bool) else 0
    try:
        oh, ow = pool_out(h, kk, pp, max(ss, 1), 1, ceil_mode), pool_out(w, kk, pp, max(ss, 1), 1, ceil_mode)
    except ZeroDivisionError:
        oh = ow = 1
    if not (0 <= oh <= 64 and 0 <= ow <= 64):
        oh, ow = 1, 1
    dy = bad_array(draw, sp, (n, c, oh, ow), fill=fill, bad_pct=bad)
    args = [("grad_output", dy), ("input_shape", in_shape), ("kernel_size", k), ("stride", stride),
            ("padding", padding), ("ceil_mode", ceil_mode), ("count_include_pad", draw(st.booleans()))]
    return _case("kernels.avg_pool2d_bwd", args, sp, isa, threads)


# ------------------------------------------------------------------ softmax cross-entropy

IGNORE_ODD = (2**63 - 1, -(2**63), 2**63, 2**64 - 100, 2**64, 3)
EPS_ODD = (0.5, -0.1, 1.5, math.nan, math.inf)


@st.composite
def xent_cases(draw, backward=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    b = draw(st.sampled_from((1, 2, 3, 0, 7, 17)))
    v = draw(st.sampled_from((1, 2, 3, 10, 33, 100, 0)))
    ignore_index = pick(draw, (-100, 0, 1, -1), IGNORE_ODD, bad)
    eps = pick(draw, (0.0, 0.1, 1.0), EPS_ODD, bad)
    logits = bad_array(draw, sp, (b, v), fill=draw(st.sampled_from(FLOAT_FILLS[:4])), bad_pct=bad)
    if draw(st.integers(0, 3)) == 0:
        target = bad_array(draw, sp, (b, v), fill=("prob",), bad_pct=bad)
    else:
        extra = (ignore_index, -1, v, 2**62, -(2**63)) if bad else (ignore_index,)
        extra = tuple(e for e in extra if -(2**63) <= e < 2**63)
        target = bad_array(draw, sp, (b,), "int64", ("labels", v) + extra, bad_pct=bad)
    weight = None if draw(st.booleans()) else bad_array(draw, sp, (v,), fill=("pos",), bad_pct=bad)
    if not backward:
        outs = [(name, bad_array(draw, sp, (b,), "float64", ("none",), bad_pct=bad))
                for name in ("out_lse", "out_nll", "out_smooth")]
        if bad and isinstance(logits, Arr) and draw(st.integers(0, 3)) == 0:
            outs[0] = ("out_lse", sp.alias(logits, (b,), "float64"))
        args = [("logits", logits), ("target", target), ("weight", weight), ("label_smoothing", eps),
                ("ignore_index", ignore_index)] + outs
        return _case("cross_entropy_fwd", args, sp, isa, threads)
    lse = bad_array(draw, sp, (b,), "float64", ("lse_of", "logits"), bad_pct=bad)
    scale = bad_array(draw, sp, (b,), fill=("gauss",), bad_pct=bad)
    how = draw(st.sampled_from(("new", "inplace", "new", "alias")))
    if how == "inplace" and isinstance(logits, Arr):
        out = Arr(logits.dtype, logits.shape, logits.strides, logits.offset, ("none",), 0)
    elif how == "alias" and isinstance(logits, Arr):
        out = sp.alias(draw(st.sampled_from([a for a in (logits, target, weight) if isinstance(a, Arr)])), (b, v))
    else:
        out = bad_array(draw, sp, (b, v), fill=("none",), bad_pct=bad)
    args = [("logits", logits), ("target", target), ("weight", weight), ("label_smoothing", eps),
            ("ignore_index", ignore_index), ("lse", lse), ("scale", scale), ("out", out)]
    return _case("cross_entropy_bwd", args, sp, isa, threads)


TARGET_DTYPES = ("int64", "int32", "uint64", "uint8", "int8", "int16", "uint32")


@st.composite
def api_xent_cases(draw, which="fwd"):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    b = draw(st.sampled_from((1, 2, 3, 0, 7)))
    v = draw(st.sampled_from((1, 2, 3, 10, 33, 0)))
    ignore_index = pick(draw, (-100, 0, 1, -1), IGNORE_ODD, bad)
    eps = pick(draw, (0.0, 0.1, 1.0), EPS_ODD, bad)
    reduction = pick(draw, ("mean", "sum", "none"), ("avg", None, "MEAN"), bad)
    if draw(st.integers(0, 3)) == 0:
        target = bad_array(draw, sp, (b, v), fill=("prob",), bad_pct=bad)
    else:
        # Class indices of any integer type; unsigned 64-bit ones include values at and above
        # 2**63, which are classes out of range, not negative numbers.
        tdt = draw(st.sampled_from(("int64",) + TARGET_DTYPES))
        info = np.iinfo(tdt)
        extra = (ignore_index, -1, v, 2**63, 2**64 - 100, 2**64 - 1, 255, -128) if bad else (ignore_index,)
        if tdt == "uint64":  # the unsigned value whose 64 bits read as signed would be ignore_index
            extra = (2**64 + ignore_index if ignore_index < 0 else 2**63,) + extra
        extra = tuple(e for e in extra if info.min <= e <= info.max)
        target = bad_array(draw, sp, (b,), tdt, ("labels", min(v, int(info.max))) + extra, bad_pct=bad)
    weight = None if draw(st.booleans()) else bad_array(draw, sp, (v,), fill=("pos",), bad_pct=bad)
    if which == "linear":
        d = draw(st.sampled_from((1, 2, 5, 16, 0)))
        hidden = bad_array(draw, sp, (b, d), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
        wt = bad_array(draw, sp, (v, d), fill=draw(st.sampled_from(FLOAT_FILLS[:2])), bad_pct=bad)
        bias = None if draw(st.booleans()) else bad_array(draw, sp, (v,), fill=("ints",), bad_pct=bad)
        chunk = draw(st.sampled_from((64 << 20, 1, 4 * max(v, 1), 8 * max(v, 1) + 3, 0, -1, 2**64)))
        if not bad and chunk < 1:
            chunk = 1
        args = [("hidden", hidden), ("weight", wt), ("target", target), ("bias", bias), ("class_weight", weight),
                ("ignore_index", ignore_index), ("label_smoothing", eps), ("reduction", reduction),
                ("chunk_bytes", chunk)]
        return _case("kernels.linear_cross_entropy", args, sp, isa, threads)
    logits = bad_array(draw, sp, (b, v), fill=draw(st.sampled_from(FLOAT_FILLS[:4])), bad_pct=bad)
    if which == "fwd":
        args = [("logits", logits), ("target", target), ("weight", weight), ("ignore_index", ignore_index),
                ("label_smoothing", eps), ("reduction", reduction), ("return_lse", draw(st.booleans()))]
        return _case("kernels.cross_entropy_fwd", args, sp, isa, threads)
    lse = bad_array(draw, sp, (b,), "float64", ("lse_of", "logits"), bad_pct=bad)
    if reduction == "none" and draw(st.booleans()):
        grad_output = bad_array(draw, sp, (b,), "float32", ("gauss",), bad_pct=bad)
    else:
        grad_output = draw(st.sampled_from((1.0, 0.5, -2.0, 0.0, math.nan, 2**1100)))
    how = draw(st.sampled_from(("none", "inplace", "new", "alias")))
    if how == "inplace" and isinstance(logits, Arr):
        out = Arr(logits.dtype, logits.shape, logits.strides, logits.offset, ("none",), 0)
    elif how == "alias" and isinstance(logits, Arr):
        out = sp.alias(logits, (b, v))
    elif how == "new":
        out = bad_array(draw, sp, (b, v), fill=("none",), bad_pct=bad)
    else:
        out = None
    args = [("logits", logits), ("target", target), ("lse", lse), ("grad_output", grad_output), ("weight", weight),
            ("ignore_index", ignore_index), ("label_smoothing", eps), ("reduction", reduction), ("out", out)]
    return _case("kernels.cross_entropy_bwd", args, sp, isa, threads)


# ------------------------------------------------------------------ optimizer steps

NS = st.sampled_from((1, 2, 3, 0, 15, 16, 17, 31, 33, 100, 1000))


def _opt_shape(draw, n):
    if n and n % 4 == 0 and draw(st.booleans()):
        return (4, n // 4)
    return (n,)


def _param_lists(draw, sp, bad, names_fills):
    """One list per name, one array per parameter (1 to 3 of them, of their own sizes); when bad,
    a list of another length, an array of another size, or one array shared by two lists."""
    shapes = [_opt_shape(draw, draw(NS)) for _ in range(draw(st.sampled_from((1, 2, 3))))]
    lists = {}
    for name, fill in names_fills:
        if fill is None:
            lists[name] = None
            continue
        items = [bad_array(draw, sp, shape, fill=fill, bad_pct=bad // 2) for shape in shapes]
        if bad and draw(st.integers(0, 9)) == 0:
            items = items[:-1] if len(items) > 1 and draw(st.booleans()) else items + [sp.array((3,), fill=fill)]
        lists[name] = items
    if bad and draw(st.integers(0, 4)) == 0:  # one array in two lists, or two overlapping ones
        names = [k for k, v in lists.items() if v]
        if len(names) >= 2:
            src, dst = draw(st.permutations(names))[:2]
            i = draw(st.integers(0, min(len(lists[src]), len(lists[dst])) - 1))
            if isinstance(lists[src][i], Arr):
                lists[dst] = list(lists[dst])
                lists[dst][i] = sp.alias(lists[src][i], lists[src][i].shape, fill=("gauss",))
    return lists, len(shapes)


@st.composite
def adam_cases(draw, door=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    grad_fill = draw(st.sampled_from(FLOAT_FILLS[:3]))
    amsgrad = draw(st.booleans())
    lists, count = _param_lists(draw, sp, bad, (("params", ("gauss",)), ("grads", grad_fill), ("exp_avgs", ("gauss",)),
                                                ("exp_avg_sqs", ("pos",)),
                                                ("max_exp_avg_sqs", ("pos",) if amsgrad else None)))
    hp = lambda normal, odd: pick(draw, normal, odd, bad)  # noqa: E731
    steps = [hp((1, 2, 10, 1000), (0, -1) + GIANT) for _ in range(count)]
    if bad and draw(st.integers(0, 9)) == 0:
        steps = draw(st.sampled_from((steps[:-1], steps + [1], [1.5] * count, None, "1")))
    args = [(k, lists[k]) for k in ("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")] + [
        ("steps", steps),
        ("lr", hp((1e-3, 0.1, 0.0), (-1e-3, math.nan, math.inf, 1e30, 2**1100))),
        ("beta1", hp((0.9, 0.0, 0.5), (1.0, -0.5, math.nan, 2.0))),
        ("beta2", hp((0.999, 0.0, 0.9), (1.0, -1.0, math.nan))),
        ("eps", hp((1e-8, 1e-3), (0.0, -1e-8, math.nan))),
        ("weight_decay", hp((0.0, 0.01, 0.1), (-0.5, math.nan, 1e30))),
        ("decoupled", draw(st.booleans())), ("maximize", draw(st.booleans()))]
    return _case("kernels.adam_step" if door else "adam_step", args, sp, isa, threads)


@st.composite
def sgd_cases(draw, door=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    momentum = draw(st.booleans())
    lists, _ = _param_lists(draw, sp, bad, (("params", ("gauss",)), ("grads", draw(st.sampled_from(FLOAT_FILLS[:3]))),
                                            ("momentum_buffers", ("gauss",) if momentum else None)))
    vals, odd = (0.0, 0.9, 0.5, 1.0), (-1.0, math.nan, math.inf, 2**1100)
    args = [("params", lists["params"]), ("grads", lists["grads"]), ("momentum_buffers", lists["momentum_buffers"]),
            ("lr", pick(draw, (0.1, 1e-3, 0.0), (-0.1, math.nan, 1e30), bad)),
            ("momentum", pick(draw, vals, odd, bad)), ("dampening", pick(draw, vals, odd, bad)),
            ("weight_decay", pick(draw, (0.0, 0.01), (math.nan, -1.0), bad)),
            ("nesterov", draw(st.booleans())), ("maximize", draw(st.booleans())), ("first", draw(st.booleans()))]
    return _case("kernels.sgd_step" if door else "sgd_step", args, sp, isa, threads)


# ------------------------------------------------------------------ elementwise

ELT_SHAPES = st.sampled_from(((7,), (), (0,), (1,), (16,), (17,), (33,), (3, 5), (2, 3, 4), (100,), (1000,), (4, 0)))


@st.composite
def eltwise_cases(draw, which, door=False):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    shape = draw(ELT_SHAPES)
    dt = draw(st.sampled_from(("float32", "float64")))
    fill = draw(st.sampled_from(FLOAT_FILLS))
    inputs = [("input", bad_array(draw, sp, shape, dt, fill, bad_pct=bad))] if which != "relu_bwd" else [
        ("grad_output", bad_array(draw, sp, shape, dt, fill, bad_pct=bad)),
        ("output", bad_array(draw, sp, shape, dt, draw(st.sampled_from(FLOAT_FILLS)), bad_pct=bad))]
    how = draw(st.sampled_from(("new", "inplace", "new", "alias")))
    src = draw(st.sampled_from([a for _, a in inputs]))
    if how == "inplace" and isinstance(src, Arr):
        out = Arr(src.dtype, src.shape, src.strides, src.offset, ("none",), 0)
    elif how == "alias" and isinstance(src, Arr) and bad:
        out = sp.alias(src, shape, dt)
    elif door and draw(st.booleans()):
        out = None  # the door allocates it
    else:
        out = bad_array(draw, sp, shape, dt, ("none",), bad_pct=bad)
    return _case(f"kernels.{which}" if door else which, inputs + [("out", out)], sp, isa, threads)


# ------------------------------------------------------------------ quantized matmul

QN = st.sampled_from((1, 3, 16, 17, 40, 15, 2, 33))
QK = st.sampled_from((64, 1, 3, 4, 5, 8, 16, 31, 33, 100, 130))
QM = st.sampled_from((1, 2, 3, 0, 5, 9, 17))


def _round_up(a, b):
    return (a + b - 1) // b * b


@st.composite
def qmatmul_cases(draw, bits):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, k, m = draw(QN), draw(QK), draw(QM)
    group = draw(st.sampled_from((32, 8, 16, 24, 64, 128))) if bits == 4 else 32
    seed = draw(st.integers(0, 3))
    np16 = _round_up(n, 16)
    x_fill = draw(st.sampled_from((("gauss",), ("ints",), ("special",), ("huge",), ("zeros",))))
    # One-row inputs and outputs in any layout: what a matrix-vector product gets from a view.
    vector = weird and draw(st.booleans())
    if vector:
        m = 1
        x = sp.array((m, k), fill=x_fill, weird=draw(st.integers(0, 3)) > 0, kinds=ONE_ROW_LAYOUTS)
    else:
        x = bad_array(draw, sp, (m, k), fill=x_fill, bad_pct=bad)
    if bits == 8:
        kp = _round_up(k, 4)
        data = bad_array(draw, sp, (np16 * kp,), "int8", ("packed", "data", n, k, 8, 32, seed), bad_pct=bad,
                         kinds=("c",))
        scales = bad_array(draw, sp, (np16,), "float32", ("packed", "scales", n, k, 8, 32, seed), bad_pct=bad,
                           kinds=("c",))
        colsum = bad_array(draw, sp, (np16,), "int32", ("packed", "colsum", n, k, 8, 32, seed), bad_pct=bad,
                           kinds=("c",))
    else:
        kp = _round_up(k, group)
        data = bad_array(draw, sp, (np16 * kp // 2,), "uint8", ("packed", "data", n, k, 4, group, seed),
                         bad_pct=bad, kinds=("c",))
        scales = bad_array(draw, sp, (np16 * (kp // group),), "float32", ("packed", "scales", n, k, 4, group, seed),
                           bad_pct=bad, kinds=("c",))
    bias = None if draw(st.booleans()) else bad_array(draw, sp, (n,), fill=("gauss",), bad_pct=bad)
    if bad and isinstance(x, Arr) and draw(st.integers(0, 4)) == 0:
        out = sp.alias(x, (m, n))
    elif vector:
        out = sp.array((m, n), fill=("none",), weird=draw(st.booleans()), kinds=ONE_ROW_LAYOUTS)
    else:
        out = bad_array(draw, sp, (m, n), fill=("none",), bad_pct=bad,
                        kinds=("neg", "step", "ext1", "c", "f", "zero", "mis", "odd"))
    n_arg, k_arg = maybe_giant(draw, n, bad // 2), maybe_giant(draw, k, bad // 2)
    if bits == 8:
        args = [("x", x), ("data", data), ("scales", scales), ("colsum", colsum), ("n", n_arg), ("k", k_arg),
                ("bias", bias), ("out", out)]
        return _case("qmatmul_int8", args, sp, isa, threads)
    g_arg = maybe_giant(draw, group, bad // 3) if bad else group
    if bad and draw(st.integers(0, 4)) == 0:
        g_arg = draw(st.sampled_from((0, 7, 4, 4104, 4096, -8, 2**63 - 8)))
    args = [("x", x), ("data", data), ("scales", scales), ("n", n_arg), ("k", k_arg), ("group", g_arg),
            ("bias", bias), ("out", out)]
    return _case("qmatmul_int4", args, sp, isa, threads)


@st.composite
def api_quant_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, k, m = draw(QN), draw(QK), draw(QM)
    bits = pick(draw, (8, 4), (2, 16, True, "8", 2**64), bad)
    group = pick(draw, (32, 64, 128, 8, 24), (0, 7, 4100, -8, 2**63, 1.5, 2**64), bad)
    w = bad_array(draw, sp, (n, k), fill=draw(st.sampled_from((("gauss",), ("ints",), ("zeros",)))), bad_pct=bad)
    lead = draw(st.sampled_from(((m,), (), (2, m), (m,))))
    x_fill = draw(st.sampled_from((("gauss",), ("ints",), ("special",))))
    vector = weird and draw(st.booleans())  # a vector or one row, as a strided or reversed view
    if vector:
        lead = draw(st.sampled_from(((), (1,))))
        x = sp.array(lead + (k,), fill=x_fill, weird=draw(st.integers(0, 3)) > 0, kinds=ONE_ROW_LAYOUTS)
    else:
        x = bad_array(draw, sp, lead + (k,), fill=x_fill, bad_pct=bad)
    bias = None if draw(st.booleans()) else bad_array(draw, sp, (n,), fill=("gauss",), bad_pct=bad)
    rows = int(np.prod(lead, dtype=np.int64)) if lead else 1
    out = None
    if draw(st.booleans()):
        out = bad_array(draw, sp, (rows, n), fill=("none",), bad_pct=bad,
                        kinds=ONE_ROW_LAYOUTS if rows == 1 else LAYOUTS, weird=bool(weird) and draw(st.booleans()))
    args = [("w", w), ("x", x), ("bits", bits), ("group_size", group), ("bias", bias), ("out", out)]
    return _case("quant.matmul", args, sp, isa, threads)


@st.composite
def api_qweight_cases(draw):
    """QuantizedWeight built from packed arrays, some of them tampered with."""
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    n, k, m = draw(QN), draw(QK), draw(QM)
    bits = draw(st.sampled_from((8, 4)))
    group = draw(st.sampled_from((32, 64, 8))) if bits == 4 else None
    g = group or 32
    np16 = _round_up(n, 16)
    kp = _round_up(k, 4 if bits == 8 else g)
    seed = draw(st.integers(0, 3))
    tamper = draw(st.sampled_from(("none", "none", "colsum", "scales", "data"))) if bad or draw(
        st.booleans()) else "none"
    pk = lambda part: ("packed", part, n, k, bits, g, seed)  # noqa: E731
    data = sp.array((np16 * kp // (1 if bits == 8 else 2),), "int8" if bits == 8 else "uint8",
                    ("ints",) if tamper == "data" else pk("data"), weird=False)
    scale_n = np16 if bits == 8 else np16 * (kp // g)
    scales = sp.array((scale_n,), "float32", draw(st.sampled_from((("special",), ("zeros",), ("gauss",))))
                      if tamper == "scales" else pk("scales"), weird=False)
    colsum = None
    if bits == 8:
        colsum = sp.array((np16,), "int32", ("ints",) if tamper == "colsum" else pk("colsum"), weird=False)
    x = bad_array(draw, sp, (m, k), fill=("gauss",), bad_pct=bad)
    bias = None if draw(st.booleans()) else sp.array((n,), fill=("gauss",))
    args = [("bits", bits), ("shape", (n, k)), ("data", data), ("scales", scales), ("colsum", colsum),
            ("group_size", group), ("x", x), ("bias", bias)]
    return _case("quant.QuantizedWeight", args, sp, isa, threads)


# ------------------------------------------------------------------ memory and runtime controls

DIMS_ANY = st.sampled_from((0, 1, 2, 3, 17, 1000, 2**31, 2**62, 2**63 - 1, 2**63, -1, 2**64, 65536, 2**20))
DTYPES_ANY = st.sampled_from(("float32", "float64", "int8", "bool", "complex128", "uint64", "float16", "object",
                              "S3", "U2", "V7", "bogus", "f4,i8", ">f4", "M8[s]", "O", None, 3))


@st.composite
def empty_cases(draw):
    isa, threads, _, bad = draw(header())
    form = draw(st.sampled_from(("list", "list", "tuple", "int", "odd")))
    dims = draw(st.lists(DIMS_ANY, max_size=4))
    if form == "tuple":
        shape = tuple(dims)
    elif form == "int":
        shape = dims[0] if dims else 5
    elif form == "odd":
        shape = draw(st.sampled_from(([2.5], ["3"], [None], [np.int64(3), np.int8(2)], [True, 2], "12", [[2]])))
    else:
        shape = dims
    # A few large sizes that come from the host cache (256 KiB and more).
    if draw(st.integers(0, 4)) == 0:
        shape = [draw(st.sampled_from((65536, 70000, 262144, 1 << 20)))]
    return Case("empty", (("shape", shape), ("dtype", draw(DTYPES_ANY))), 0, isa, threads)


@st.composite
def runtime_cases(draw):
    isa, threads, _, _ = draw(header())
    action = draw(st.sampled_from(("set_num_threads", "_C.set_num_threads", "set_isa", "_C.set_isa",
                                   "set_host_cache_limit", "_C.host_cache_set_limit", "measure_fma_peak")))
    if action.endswith("set_num_threads"):
        value = draw(st.sampled_from((1, 2, 3, 0, 1024, 1025, True, 2.0, "2", None) + GIANT))
    elif action.endswith("set_isa"):
        value = draw(st.sampled_from(ISAS + ("avx512_vnni", "AVX2", "", "sse4", "generic\0", None, 3, "avx512 ")))
    elif "cache" in action:
        value = draw(st.sampled_from((0, 1, 1 << 20, 1 << 30, 1.5, True, None) + GIANT))
    else:
        value = (draw(st.sampled_from((0.002, 0.001, 0.0, -1.0, math.nan, math.inf, 61.0, 1e-300, 2**64))),
                 draw(st.sampled_from((0, 1, 2, 3, -1, 1025, 2**31, 2**63))))
    return Case("runtime", (("action", action), ("value", value)), 0, isa, threads)


@st.composite
def bandwidth_cases(draw):
    isa, threads, weird, bad = draw(header())
    sp = Space(draw, weird)
    buf = bad_array(draw, sp, (draw(st.sampled_from((1000, 0, 1, 17, 4096))),), fill=("gauss",), bad_pct=max(bad, 20))
    repeats = draw(st.sampled_from((1, 2, 0, -1, 1000, 1001, 2**63, 2**31)))
    nthreads = draw(st.sampled_from((0, 1, 2, 3, -1, 1025, 2**63)))
    return _case("measure_read_bandwidth", [("buffer", buf), ("repeats", repeats), ("threads", nthreads)], sp, isa,
                 threads)
