"""The C API (libember, include/ember/ember.h): the examples built with CMake against the
installed package and run, bit for bit equal to the Python module's results; the header as C99
and C++17 with warnings as errors; the exported symbols against the committed list; pkg-config;
bad input through ctypes (statuses and messages, never a crash)."""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ember

ROOT = Path(__file__).resolve().parents[1]
LIB = Path(ember.get_lib()) / "libember.so"
CC, CXX, CMAKE = shutil.which("cc"), shutil.which("c++"), shutil.which("cmake")
needs_cc = pytest.mark.skipif(CC is None or CXX is None, reason="no C/C++ compiler (cc, c++) on PATH")
needs_cmake = pytest.mark.skipif(CMAKE is None, reason="no cmake on PATH (pip install cmake)")


def lcg(count, seed):
    """The examples' generator (gemm.c's fill), in NumPy."""
    out = np.empty(count, np.float32)
    state = seed
    for i in range(count):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.float32(state >> 8) / np.float32(16777216.0) - np.float32(0.5)
    return out


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    if CC is None or CXX is None or CMAKE is None:
        pytest.skip("building the examples needs cc, c++ and cmake")
    build = tmp_path_factory.mktemp("examples")
    for cmd in ([CMAKE, "-S", str(ROOT / "examples" / "c"), "-B", str(build), f"-DEmber_DIR={ember.get_cmake_dir()}",
                 "-DCMAKE_BUILD_TYPE=Release"], [CMAKE, "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return build


def run_example(path, *args, threads=2):
    env = dict(os.environ, EMBER_NUM_THREADS=str(threads))
    return subprocess.run([str(path), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


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
    c = ctypes.CDLL(str(LIB))
    c.ember_last_error.restype = ctypes.c_char_p
    c.ember_version.restype = ctypes.c_char_p
    c.ember_isa.restype = ctypes.c_char_p
    c.ember_status_string.restype = ctypes.c_char_p
    i64, fp = ctypes.c_int64, ctypes.POINTER(ctypes.c_float)
    c.ember_gemm_f32.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, ctypes.c_float, fp, i64, fp, i64,
                                 ctypes.c_float, fp, i64, fp, ctypes.c_int]
    return c


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
