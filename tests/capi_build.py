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
