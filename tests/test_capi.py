"""The C API (libember, include/ember/ember.h): the examples built with CMake against the
installed package and run, bit for bit equal to the Python module's results; the header as C99
and C++17 with warnings as errors; the exported symbols against the committed list; pkg-config;
bad input through ctypes (statuses and messages, never a crash)."""

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from capi_build import CC, CXX, LIB, ROOT, library, run_example

import ember

needs_cc = pytest.mark.skipif(CC is None or CXX is None, reason="no C/C++ compiler (cc, c++) on PATH")


def lcg(count, seed):
    """The examples' generator (gemm.c's fill), in NumPy."""
    out = np.empty(count, np.float32)
    state = seed
    for i in range(count):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.float32(state >> 8) / np.float32(16777216.0) - np.float32(0.5)
    return out


def test_the_c_gemm_example_equals_python_bit_for_bit(examples, tmp_path):
    m, n, k = 67, 45, 129
    out = tmp_path / "c.bin"
    done = run_example(examples / "gemm", m, n, k, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{m}x{n}x{k}" in done.stdout and f"ISA {ember.get_isa()}" in done.stdout
    a, b = lcg(m * k, 1).reshape(m, k), lcg(k * n, 2).reshape(k, n)
    want = np.empty((m, n), np.float32)
    previous = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        ember._C.gemm(a, b, want, 1.0, 0.0, False, False, None, False)
    finally:
        ember.set_num_threads(previous)
    got = np.fromfile(out, np.float32).reshape(m, n)
    assert np.array_equal(got, want)


def test_the_cpp_conv2d_example_equals_python_bit_for_bit(examples, tmp_path):
    out = tmp_path / "y.bin"
    done = run_example(examples / "conv2d", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rejected as expected: ember_conv2d_forward_f32: groups (2) must divide c (3) and o (16)" in done.stdout
    x = lcg(2 * 3 * 32 * 32, 3).reshape(2, 3, 32, 32)
    w = lcg(16 * 3 * 3 * 3, 4).reshape(16, 3, 3, 3)
    bias = lcg(16, 5)
    previous = ember.get_num_threads()
    ember.set_num_threads(1)
    try:
        with ember.no_grad():
            want = ember.nn.functional.relu(ember.nn.functional.conv2d(
                ember.tensor(x), ember.tensor(w), ember.tensor(bias), padding=1)).numpy()
    finally:
        ember.set_num_threads(previous)
    np.testing.assert_array_equal(np.fromfile(out, np.float32).reshape(want.shape), want)


@needs_cc
@pytest.mark.parametrize("compiler, flags", [("c", ["-std=c99", "-pedantic"]), ("c++", ["-std=c++17", "-pedantic"])])
def test_the_headers_compile_cleanly(tmp_path, compiler, flags):
    source = tmp_path / ("check.c" if compiler == "c" else "check.cpp")
    includes = '#include "ember/ember.h"\n' + ('#include "ember/ember.hpp"\n' if compiler == "c++" else "")
    source.write_text(includes + "int main(void) { return ember_abi_version() == EMBER_ABI_VERSION ? 0 : 1; }\n")
    exe = tmp_path / "check"
    cmd = [CC if compiler == "c" else CXX, *flags, "-Wall", "-Wextra", "-Werror", f"-I{ember.get_include()}",
           str(source), "-o", str(exe), f"-L{ember.get_lib()}", f"-Wl,-rpath,{ember.get_lib()}", "-lember"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert subprocess.run([str(exe)], timeout=30).returncode == 0


def test_only_the_committed_symbols_are_exported():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm on PATH to list the library's symbols")
    done = subprocess.run([nm, "-D", "--defined-only", str(LIB)], capture_output=True, text=True, check=True)
    exported = sorted(line.split()[-1] for line in done.stdout.splitlines() if line.strip())
    committed = (ROOT / "csrc" / "capi" / "symbols.txt").read_text().split()
    assert exported == committed, "the C ABI changed: update csrc/capi/symbols.txt (and EMBER_ABI_VERSION if a " \
                                  "function changed or went)"
    assert LIB.stat().st_size <= 5 * 2**20


def test_pkg_config_describes_the_library():
    pkg = shutil.which("pkg-config")
    if pkg is None:
        pytest.skip("no pkg-config on PATH")
    env = dict(os.environ, PKG_CONFIG_PATH=str(Path(ember.get_lib()) / "pkgconfig"))
    flags = subprocess.run([pkg, "--cflags", "--libs", "ember"], capture_output=True, text=True, env=env, check=True)
    assert "-lember" in flags.stdout
    include = next(f[2:] for f in flags.stdout.split() if f.startswith("-I"))
    assert (Path(include) / "ember" / "ember.h").is_file()
    assert subprocess.run([pkg, "--modversion", "ember"], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == ember.__version__


# ---------------------------------------------------------------- through ctypes: bad input
@pytest.fixture(scope="module")
def lib():
    return library()


def ptr(a, offset=0):
    return ctypes.cast(a.ctypes.data + offset, ctypes.POINTER(ctypes.c_float)) if a is not None else None


def test_runtime_queries(lib):
    assert lib.ember_abi_version() == 1
    assert lib.ember_version().decode() == ember.__version__
    assert lib.ember_isa().decode() in ember.available_isas()
    assert lib.ember_set_num_threads(0) == 1
    assert lib.ember_last_error() == b"ember_set_num_threads: n must be between 1 and 1024, got 0"
    assert lib.ember_set_num_threads(1) == 0 and lib.ember_get_num_threads() == 1
    assert lib.ember_last_error() == b""
    assert lib.ember_set_isa(b"sse9") == 1 and b"sse9" in lib.ember_last_error()
    assert lib.ember_set_isa(None) == 1 and b"name is NULL" in lib.ember_last_error()
    assert lib.ember_set_isa(b"generic") == 0 and lib.ember_isa() == b"generic"
    assert lib.ember_set_isa(ember.get_isa().encode()) == 0
    assert lib.ember_status_string(3) == b"out of memory"


def test_a_bad_ember_isa_is_reported_until_one_is_set():
    # EMBER_ISA is read at the first call: a bad one fails the kernels (and says so) until
    # ember_set_isa chooses an ISA, which it can.
    script = f"""
import ctypes
lib = ctypes.CDLL({str(LIB)!r})  # not through ember, which refuses to import with a bad EMBER_ISA
lib.ember_last_error.restype = ctypes.c_char_p
i64, f32, p = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
lib.ember_gemm_f32.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, f32, p, i64, p, i64, f32, p, i64, p,
                               ctypes.c_int]
a = (ctypes.c_float * 1)(1.0)
c = (ctypes.c_float * 1)(0.0)
print(lib.ember_gemm_f32(0, 0, 1, 1, 1, 1.0, a, 1, a, 1, 0.0, c, 1, None, 0), lib.ember_last_error().decode())
print(lib.ember_set_isa(b"generic"), lib.ember_gemm_f32(0, 0, 1, 1, 1, 1.0, a, 1, a, 1, 0.0, c, 1, None, 0), c[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EMBER_ISA": "bogus"})
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("1 ember_gemm_f32: EMBER_ISA: ") and "bogus" in first and "ember_set_isa" in first
    assert second == "0 0 1.0"


def gemm(lib, m, n, k, a, lda, b, ldb, c, ldc, bias=None, trans_a=0, trans_b=0):
    status = lib.ember_gemm_f32(trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc, bias, 0)
    return status, lib.ember_last_error().decode()


def test_gemm_through_ctypes_and_its_bad_input(lib, rng):
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((4, 3)).astype(np.float32)
    c = np.zeros((5, 3), np.float32)
    assert gemm(lib, 5, 3, 4, ptr(a), 4, ptr(b), 3, ptr(c), 3) == (0, "")
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-6)
    cases = [
        ((5, 3, 4, None, 4, ptr(b), 3, ptr(c), 3), "a is NULL"),
        ((5, 3, 4, ptr(a), 4, ptr(b), 3, None, 3), "c is NULL"),
        ((-1, 3, 4, ptr(a), 4, ptr(b), 3, ptr(c), 3), "m must be >= 0, got -1"),
        ((5, 3, 4, ptr(a), 3, ptr(b), 3, ptr(c), 3), "leading dimension of a must be >= max(1, 4), got 3"),
        ((5, 3, 4, ptr(a), 4, ptr(b), 3, ptr(c), 2), "leading dimension of c"),
        ((2**40, 2**40, 4, ptr(a), 4, ptr(b), 2**40, ptr(c), 2**40), "too large"),
        ((5, 3, 4, ptr(a), 4, ptr(b), 3, ptr(a), 3), "c must not share memory with a"),
        ((5, 3, 4, ptr(a), 4, ptr(b), 3, ptr(c, 2), 3), None),  # misaligned c: reported, or fine if aligned
    ]
    for args, message in cases:
        status, text = gemm(lib, *args)
        if message is None:
            assert status == 1 and "not aligned" in text
            continue
        assert status == 1, (args, text)
        assert text.startswith("ember_gemm_f32: ") and message in text, text
    status, text = gemm(lib, 5, 3, 4, ptr(a), 4, ptr(b), 3, ptr(c), 3, bias=ptr(c))
    assert status == 1 and "c must not share memory with bias" in text
    assert gemm(lib, 0, 3, 4, None, 4, ptr(b), 3, None, 3) == (0, "")  # nothing to do, nothing read


def test_conv2d_shape_errors_through_ctypes(lib):
    class Shape(ctypes.Structure):
        _fields_ = [(name, ctypes.c_int64) for name in (
            "n", "c", "h", "w", "o", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom",
            "pad_right", "dilation_h", "dilation_w", "groups")]

    oh, ow = ctypes.c_int64(), ctypes.c_int64()
    good = Shape(1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    assert lib.ember_conv2d_output_size(ctypes.byref(good), ctypes.byref(oh), ctypes.byref(ow)) == 0
    assert (oh.value, ow.value) == (8, 8)
    for changes, message in [({"kh": 0}, "kh must be >= 1, got 0"), ({"h": 1, "pad_top": 0, "pad_bottom": 0},
                                                                      "smaller than the dilated kernel"),
                             ({"groups": 2}, "groups (2) must divide c (3)"), ({"pad_left": -1}, "pad_left")]:
        bad = Shape(*[changes.get(f, getattr(good, f)) for f, _ in Shape._fields_])
        assert lib.ember_conv2d_output_size(ctypes.byref(bad), ctypes.byref(oh), ctypes.byref(ow)) == 1
        assert message in lib.ember_last_error().decode()
    assert lib.ember_conv2d_output_size(None, ctypes.byref(oh), ctypes.byref(ow)) == 1
    assert b"shape is NULL" in lib.ember_last_error()
    x = np.zeros((1, 3, 8, 8), np.float32)
    assert lib.ember_conv2d_forward_f32(ctypes.byref(good), ptr(x), None, None, 0, ptr(x)) == 1
    assert b"w is NULL" in lib.ember_last_error()


class ConvShape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in (
        "n", "c", "h", "w", "o", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right",
        "dilation_h", "dilation_w", "groups")]


class PoolShape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in (
        "n", "c", "h", "w", "kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w")] + [
        ("ceil_mode", ctypes.c_int)]


@pytest.fixture()
def same_threads(lib):
    """The library runs with the Python module's thread count (sums split by thread agree)."""
    assert lib.ember_set_num_threads(ember.get_num_threads()) == 0


def vp(a):
    return ctypes.c_void_p(a.ctypes.data) if a is not None else None


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, (1, 1), 1, 1), (2, (0, 1), 1, 2), (1, (2, 2), 2, 4)])
def test_conv2d_gradients_through_ctypes_equal_python(lib, rng, same_threads, stride, padding, dilation, groups):
    from ember.kernels import conv2d

    x = rng.standard_normal((2, 8, 11, 9)).astype(np.float32)
    w = rng.standard_normal((12, 8 // groups, 3, 3)).astype(np.float32)
    y = conv2d.conv2d_fwd(x, w, None, stride=stride, padding=padding, dilation=dilation, groups=groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want_dx = conv2d.conv2d_bwd_data(dy, w, x.shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
    want_dw, want_db = conv2d.conv2d_bwd_weight(x, dy, w.shape, stride=stride, padding=padding, dilation=dilation,
                                                groups=groups, bias=True)
    shape = ConvShape(2, 8, 11, 9, 12, 3, 3, stride, stride, padding[0], padding[1], padding[0], padding[1],
                      dilation, dilation, groups)
    oh, ow = ctypes.c_int64(), ctypes.c_int64()
    assert lib.ember_conv2d_output_size(ctypes.byref(shape), ctypes.byref(oh), ctypes.byref(ow)) == 0
    assert (oh.value, ow.value) == y.shape[2:]
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(12, np.float32)
    assert lib.ember_conv2d_backward_data_f32(ctypes.byref(shape), vp(dy), vp(w), vp(dx)) == 0, lib.ember_last_error()
    assert lib.ember_conv2d_backward_weight_f32(ctypes.byref(shape), vp(x), vp(dy), vp(dw), vp(db)) == 0
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(dw, want_dw)
    np.testing.assert_array_equal(db, want_db)
    assert lib.ember_conv2d_backward_weight_f32(ctypes.byref(shape), vp(x), vp(dy), vp(dw), None) == 0  # no bias
    np.testing.assert_array_equal(dw, want_dw)
    assert lib.ember_conv2d_backward_weight_f32(ctypes.byref(shape), vp(x), vp(dy), vp(dw), vp(dw)) == 1
    assert b"db must not share memory with dw" in lib.ember_last_error()
    assert lib.ember_conv2d_backward_data_f32(ctypes.byref(shape), vp(dy), vp(w), vp(dy)) == 1
    assert b"dx must not share memory with dy" in lib.ember_last_error()


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    ((2, 2), (2, 2), (0, 0), (1, 1), 0), ((3, 2), (2, 1), (1, 1), (1, 1), 1), ((3, 3), (1, 2), (1, 0), (2, 1), 0)])
def test_pooling_through_ctypes_equals_python(lib, rng, same_threads, kernel, stride, padding, dilation, ceil_mode):
    from ember.kernels import pool2d

    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    shape = PoolShape(2, 3, 9, 10, *kernel, *stride, *padding, *dilation, ceil_mode)
    oh, ow = ctypes.c_int64(), ctypes.c_int64()
    assert lib.ember_pool2d_output_size(ctypes.byref(shape), ctypes.byref(oh), ctypes.byref(ow)) == 0
    want, want_idx = pool2d.max_pool2d_fwd(x, kernel, stride, padding, dilation, bool(ceil_mode), return_indices=True)
    assert (oh.value, ow.value) == want.shape[2:]
    y, idx = np.empty_like(want), np.empty_like(want_idx)
    assert lib.ember_max_pool2d_forward_f32(ctypes.byref(shape), vp(x), vp(y), vp(idx)) == 0, lib.ember_last_error()
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(idx, want_idx)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.empty_like(x)
    assert lib.ember_max_pool2d_backward_f32(ctypes.byref(shape), vp(dy), vp(idx), vp(dx)) == 0
    np.testing.assert_array_equal(dx, pool2d.max_pool2d_bwd(dy, idx, x.shape))
    idx.flat[3] = 9 * 10  # one past its plane
    assert lib.ember_max_pool2d_backward_f32(ctypes.byref(shape), vp(dy), vp(idx), vp(dx)) == 1
    assert lib.ember_last_error() == b"ember_max_pool2d_backward_f32: indices[3] = 90 is outside the input plane " \
                                     b"(0 <= index < 90)"
    if dilation != (1, 1):
        assert lib.ember_avg_pool2d_forward_f32(ctypes.byref(shape), 1, vp(x), vp(y)) == 1
        assert b"average pooling takes no dilation" in lib.ember_last_error()
        return
    for include_pad in (0, 1):
        want = pool2d.avg_pool2d_fwd(x, kernel, stride, padding, bool(ceil_mode), bool(include_pad))
        y = np.empty_like(want)
        assert lib.ember_avg_pool2d_forward_f32(ctypes.byref(shape), include_pad, vp(x), vp(y)) == 0
        np.testing.assert_array_equal(y, want)
        assert lib.ember_avg_pool2d_backward_f32(ctypes.byref(shape), include_pad, vp(dy), vp(dx)) == 0
        np.testing.assert_array_equal(dx, pool2d.avg_pool2d_bwd(dy, x.shape, kernel, stride, padding, bool(ceil_mode),
                                                                bool(include_pad)))


def test_adaptive_pooling_through_ctypes_equals_python(lib, rng, same_threads):
    from ember.kernels import pool2d

    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    want = pool2d.adaptive_avg_pool2d_fwd(x, (3, 2))
    y = np.empty_like(want)
    assert lib.ember_adaptive_avg_pool2d_forward_f32(2, 3, 7, 5, 3, 2, vp(x), vp(y)) == 0
    np.testing.assert_array_equal(y, want)
    dx = np.empty_like(x)
    assert lib.ember_adaptive_avg_pool2d_backward_f32(2, 3, 7, 5, 3, 2, vp(y), vp(dx)) == 0
    np.testing.assert_array_equal(dx, pool2d.adaptive_avg_pool2d_bwd(y, x.shape))
    assert lib.ember_adaptive_avg_pool2d_forward_f32(2, 3, 0, 5, 3, 2, vp(x), vp(y)) == 1
    assert b"h must be >= 1, got 0" in lib.ember_last_error()
    # Windows found from i * H / OH: an H x OH beyond 64 bits read before the input, now refused (the
    # pointers are never reached).
    assert lib.ember_adaptive_avg_pool2d_forward_f32(1, 1, 2**32, 1, 2**31 + 2, 1, vp(x), vp(y)) == 1
    assert b"beyond 64-bit window arithmetic" in lib.ember_last_error()


def test_window_checks_take_no_time_on_huge_planes(lib):
    # Only the windows that start in the padding or past the end are looked at: a 1 x 1 window over
    # 2**50 rows is answered at once (with the missing input named), not after 2**50 steps.
    import time

    shape = PoolShape(n=1, c=1, h=2**50, w=1, kh=1, kw=1, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                      dilation_h=1, dilation_w=1, ceil_mode=0)
    start = time.perf_counter()
    assert lib.ember_max_pool2d_forward_f32(ctypes.byref(shape), None, None, None) == 1
    assert time.perf_counter() - start < 1.0 and b"x is NULL" in lib.ember_last_error()


@pytest.mark.parametrize("changes, message", [
    ({"kh": 0}, "kh must be >= 1, got 0"), ({"pad_w": -1}, "pad_w must be >= 0, got -1"),
    ({"kh": 20, "kw": 20}, "is larger than the padded input"), ({"stride_h": 2**62}, "too large"),
    ({"pad_h": 2, "kh": 2}, "covers no input element"), ({"n": 2**40, "c": 2**40}, "too large"),
    ({"h": -3}, "h must be >= 0, got -3")])
def test_pooling_shape_errors_through_ctypes(lib, changes, message):
    good = dict(n=1, c=2, h=6, w=6, kh=2, kw=2, stride_h=2, stride_w=2, pad_h=0, pad_w=0, dilation_h=1,
                dilation_w=1, ceil_mode=0)
    shape = PoolShape(**{**good, **changes})
    x, y = np.zeros((1, 2, 6, 6), np.float32), np.zeros((1, 2, 3, 3), np.float32)
    assert lib.ember_max_pool2d_forward_f32(ctypes.byref(shape), vp(x), vp(y), None) == 1
    text = lib.ember_last_error().decode()
    assert text.startswith("ember_max_pool2d_forward_f32: ") and message in text, text
    assert lib.ember_max_pool2d_forward_f32(None, vp(x), vp(y), None) == 1
    assert b"shape is NULL" in lib.ember_last_error()


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1)])
def test_bf16_gemm_and_conversions_through_ctypes_equal_python(lib, rng, same_threads, trans_a, trans_b):
    m, n, k = 37, 50, 70
    a32 = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b32 = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    a16, b16 = np.empty(a32.shape, np.uint16), np.empty(b32.shape, np.uint16)
    assert lib.ember_bf16_from_f32(vp(a32), a32.size, vp(a16)) == 0
    assert lib.ember_bf16_from_f32(vp(b32), b32.size, vp(b16)) == 0
    want16 = np.empty_like(a16)
    ember._C.convert_bf16(a32, want16)
    np.testing.assert_array_equal(a16, want16)
    back = np.empty_like(a32)
    assert lib.ember_f32_from_bf16(vp(a16), a16.size, vp(back)) == 0
    np.testing.assert_array_equal(back.view(np.uint32) >> 16, a16)
    bias = rng.standard_normal(n).astype(np.float32)
    want = np.empty((m, n), np.float32)
    ember._C.gemm(a16.T if trans_a else a16, b16.T if trans_b else b16, want, 1.0, 0.0, False, False, bias, True)
    c = np.full((m, n), np.nan, np.float32)
    status = lib.ember_gemm_bf16(trans_a, trans_b, m, n, k, ctypes.c_float(1.0), vp(a16), a16.shape[1], vp(b16),
                                 b16.shape[1], ctypes.c_float(0.0), vp(c), n, vp(bias), 1)
    assert status == 0, lib.ember_last_error()
    np.testing.assert_array_equal(c, want)
    assert lib.ember_gemm_bf16(trans_a, trans_b, m, n, k, ctypes.c_float(1.0), vp(a16), a16.shape[1], None,
                               b16.shape[1], ctypes.c_float(0.0), vp(c), n, None, 0) == 1
    assert lib.ember_last_error() == b"ember_gemm_bf16: b is NULL"
    assert lib.ember_bf16_from_f32(vp(a32), a32.size, vp(a32)) == 1
    assert b"out must not share memory with x" in lib.ember_last_error()
