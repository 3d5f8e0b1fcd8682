"""What the C API tests share: the installed library, and the examples (examples/c) built with
CMake against the installed package and run."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ember

ROOT = Path(__file__).resolve().parents[1]
LIB = Path(ember.get_lib()) / "libember.so"
CC, CXX, CMAKE = shutil.which("cc"), shutil.which("c++"), shutil.which("cmake")


def build_examples(build: Path) -> Path:
    """The examples built into `build` (skipping the test when no compiler or CMake exists)."""
    if CC is None or CXX is None or CMAKE is None:
        pytest.skip("building the examples needs cc, c++ and cmake")
    for cmd in ([CMAKE, "-S", str(ROOT / "examples" / "c"), "-B", str(build), f"-DEmber_DIR={ember.get_cmake_dir()}",
                 "-DCMAKE_BUILD_TYPE=Release"], [CMAKE, "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return build


def run_example(path, *args, threads=2):
    env = dict(os.environ, EMBER_NUM_THREADS=str(threads))
    return subprocess.run([str(path), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def library():
    """libember through ctypes, with the return and argument types of the functions whose C types
    ctypes would not guess (strings, 64-bit integers, handles)."""
    import ctypes

    c = ctypes.CDLL(str(LIB))
    text, i64, ptr, i32 = ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for name in ("ember_last_error", "ember_version", "ember_isa", "ember_status_string", "ember_model_layer"):
        getattr(c, name).restype = text
    c.ember_model_num_layers.restype = i64
    gemm = [i32, i32, i64, i64, i64, ctypes.c_float, ptr, i64, ptr, i64, ctypes.c_float, ptr, i64, ptr, i32]
    signatures = {
        "ember_gemm_f32": gemm, "ember_gemm_bf16": gemm,
        "ember_bf16_from_f32": [ptr, i64, ptr], "ember_f32_from_bf16": [ptr, i64, ptr],
        "ember_adaptive_avg_pool2d_forward_f32": [i64] * 6 + [ptr] * 2,
        "ember_adaptive_avg_pool2d_backward_f32": [i64] * 6 + [ptr] * 2,
        "ember_adam_step_f32": [ptr, ptr, i64], "ember_sgd_step_f32": [ptr, ptr, i64],
        "ember_qweight_quantize_f32": [ptr, i64, i64, i64, i32, i64, ptr],
        "ember_qweight_from_packed": [i32, i64, i64, i64, ptr, i64, ptr, i64, ptr, i64, ptr],
        "ember_qweight_quantize_int8_groups_f32": [ptr, i64, i64, i64, i64, ptr],
        "ember_qweight_from_packed_int8_groups": [i64, i64, i64, ptr, i64, ptr, i64, ptr],
        "ember_qweight_packed_int8_groups": [ptr, ptr, ptr, ptr, ptr],
        "ember_qmatmul_f32": [ptr, i64, ptr, i64, ptr, ptr, i64],
        "ember_qweight_free": [ptr], "ember_model_free": [ptr], "ember_model_layer": [ptr, i64],
    }
    for name, args in signatures.items():
        getattr(c, name).argtypes = args
    return c
