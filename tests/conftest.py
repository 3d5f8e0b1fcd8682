"""Fixtures and hooks shared by the whole suite.

``isa``: every instruction set Ember knows, forced for the duration of a test; one this CPU
lacks is reported as a skip naming it, so a run on a smaller CPU says what it did not test.
``rng``: a NumPy generator with a fresh seed per test (printed in the header and reproducible
with EMBER_TEST_SEED), so tests never run on the same data twice, let alone on zeros.
``device``: each device a test runs on -- ``cpu``, ``strict`` (host arrays that refuse NumPy,
see strict_device.py: any NumPy call above the kernel doors fails there) and ``cuda`` where a GPU
is usable -- made the default device for the test's tensors and layers.

With ``CI`` set in the environment, a test skipped because a reference library (PyTorch,
scikit-learn) or a build tool (a C compiler, CMake, nm, pkg-config, mpiexec) is missing is an
error: CI has them (the ``reference`` extra installs the libraries), and a test that silently
stops running is a test lost. Skips for absent hardware (a GPU, an instruction set) stay skips.
"""

import functools
import importlib
import os
import re
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import ember
import strict_device
from ember import backend

SESSION_SEED = int(os.environ.get("EMBER_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))

# Every instruction set ember.set_isa accepts, lowest first (an op without a kernel of its own at a
# level runs the one below it, which the `isa` fixture then checks through the dispatch).
ALL_ISAS = ("generic", "avx2", "avx512", "avx512_bf16", "amx")

# Reference libraries: import name -> the names a skip message may call it by.
REFERENCES = {"torch": ("torch", "pytorch"), "sklearn": ("sklearn", "scikit-learn"), "onnx": ("onnx",),
              "onnxruntime": ("onnxruntime", "onnx runtime"), "jsonschema": ("jsonschema",),
              "matplotlib": ("matplotlib",), "httpx": ("httpx",), "starlette": ("starlette",), "uvicorn": ("uvicorn",),
              "prometheus_client": ("prometheus-client", "prometheus_client"), "aiohttp": ("aiohttp",),
              "mpi4py": ("mpi4py",)}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent or broken: either way the reference cannot run
        return False
    return True


def missing_reference(reason: str):
    """The reference library a skip reason blames, if that library is indeed unavailable."""
    text = reason.lower()
    for module, names in REFERENCES.items():
        if any(name in text for name in names) and not _importable(module):
            return module
    return None


# Tools the C API, example and MPI tests run: a skip reason names them as words.
TOOLS = ("cc", "c++", "cmake", "nm", "pkg-config", "mpiexec")


def _tool_found(tool: str) -> bool:
    beside = Path(sys.executable).parent / tool  # a wheel's tool in this environment (mpich's mpiexec)
    return beside.exists() or shutil.which(tool) is not None


def missing_tool(reason: str):
    """The tool a skip reason names, if that tool is indeed absent."""
    words = set(re.findall(r"[\w+.-]+", reason))
    return next((tool for tool in TOOLS if tool in words and not _tool_found(tool)), None)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _reference_error(module: str, reason: str) -> str:
    return (f"CI is set, but this test was skipped because the reference library {module!r} is missing "
            f"({reason}). Install the references: pip install '.[test,reference]'")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        module, tool = missing_reference(reason), missing_tool(reason)
        if module is not None:
            report.outcome = "failed"
            report.longrepr = _reference_error(module, reason)
        elif tool is not None:
            report.outcome = "failed"
            report.longrepr = (f"CI is set, but this test was skipped because the tool {tool!r} is missing "
                               f"({reason}); CI machines have it")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.outcome == "skipped":  # a module-level pytest.importorskip
        reason = _skip_reason(report)
        module = missing_reference(reason)
        if module is not None:
            report.outcome = "failed"
            report.longrepr = _reference_error(module, reason)


def pytest_report_header(config):
    return [
        f"ember {ember.__version__}: isa {ember.get_isa()} (available: {', '.join(ember.available_isas())}), "
        f"{ember.get_num_threads()} threads",
        f"EMBER_TEST_SEED={SESSION_SEED}" + (" (CI: a missing reference library is an error)" if in_ci() else ""),
    ]


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """The C examples (examples/c) built with CMake against the installed package."""
    import capi_build

    return capi_build.build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    if request.param not in ember.available_isas():
        pytest.skip(f"this CPU does not support the {request.param} kernels")
    previous = ember.get_isa()
    ember.set_isa(request.param)
    try:
        yield request.param
    finally:
        ember.set_isa(previous)


@pytest.fixture(params=[None, "avx512_vbmi", "avx512_vnni"], ids=lambda f: f"without-{f}" if f else "all-features")
def feature_off(request, isa):
    """With ``isa``: the kernels chosen with every CPU feature, or with one switched off, as on a
    CPU without it (each feature-gated kernel set runs on one machine). Skips where the CPU lacks
    the feature or the ISA level does not look at it."""
    name = request.param
    if name is None:
        yield None
        return
    if not ember._C.cpu_features()[name]:
        pytest.skip(f"this CPU has no {name} to switch off")
    if isa not in ("avx512", "avx512_bf16", "amx"):
        pytest.skip(f"the {isa} kernels do not use {name}")
    previous = ember._C.allow_cpu_feature(name, False)
    try:
        yield name
    finally:
        ember._C.allow_cpu_feature(name, previous)


@pytest.fixture
def rng(request):
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture
def num_threads():
    """Restores the thread count a test changes."""
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)


@pytest.fixture(params=["cpu", "strict", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    name = request.param
    if name == "strict":
        strict_device.register()
    elif name == "cuda" and backend.cuda_status() != "available":
        pytest.skip(f"no CUDA device: {backend.cuda_status()}")
    previous = ember.get_default_device()
    ember.set_default_device(name)
    try:
        yield name
    finally:
        ember.set_default_device(previous)
