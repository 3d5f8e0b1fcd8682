"""The suite's own rules: with CI set, a test skipped for want of a reference library fails
(while a skip for absent hardware stays a skip), and the ``isa`` fixture knows every ISA."""

import os
import pathlib
import re
import subprocess
import sys

import ember

CONFTEST = pathlib.Path(__file__).with_name("conftest.py")

INNER_TESTS = '''
import sys

import pytest

sys.modules["torch"] = None  # as if PyTorch were not installed
sys.modules["sklearn"] = None


def test_needs_torch():
    pytest.importorskip("torch")


@pytest.mark.skipif(True, reason="PyTorch is not installed")
def test_marked_for_torch():
    pass


def test_needs_sklearn():
    pytest.importorskip("sklearn")


def test_needs_hardware():
    pytest.skip("no CUDA device here")


def test_isa(isa):
    assert ember.get_isa() == isa


def test_passes():
    assert 1 + 1 == 2
'''

INNER_MODULE_SKIP = '''
import sys

import pytest

sys.modules["torch"] = None
torch = pytest.importorskip("torch")


def test_never_collected():
    pass
'''


def run_inner(tmp_path, ci):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "strict_device.py").write_text(CONFTEST.with_name("strict_device.py").read_text())
    (tmp_path / "test_inner.py").write_text("import ember\n" + INNER_TESTS)
    (tmp_path / "test_inner_module.py").write_text(INNER_MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SKBUILD_EDITABLE_VERBOSE"] = "0"
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--continue-on-collection-errors",
         "-o", "addopts=", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    return result


def test_in_ci_a_missing_reference_is_an_error_and_missing_hardware_a_skip(tmp_path):
    result = run_inner(tmp_path, "true")
    out = result.stdout
    assert result.returncode != 0, out
    for name in ("test_needs_torch", "test_marked_for_torch", "test_needs_sklearn"):
        assert re.search(rf"(FAILED|ERROR) \S*{name}", out), f"{name} was not turned into a failure:\n{out}"
    assert "Install the references: pip install '.[test,reference]'" in out
    assert re.search(r"ERROR \S*test_inner_module\.py", out), out  # the module-level skip
    assert re.search(r"SKIPPED \[1\] \S*test_inner\.py:\d+: no CUDA device here", out), out
    assert re.search(r"PASSED \S*test_passes", out), out
    for isa in ember.available_isas():
        assert f"PASSED test_inner.py::test_isa[{isa}]" in out, out


def test_outside_ci_a_missing_reference_is_a_skip(tmp_path):
    result = run_inner(tmp_path, None)
    out = result.stdout
    assert result.returncode == 0, out
    assert "could not import 'torch'" in out and "could not import 'sklearn'" in out
    assert "PyTorch is not installed" in out and "FAILED" not in out and "ERROR" not in out


def test_what_counts_as_ci(monkeypatch):
    conftest = load_conftest()
    for value, ci in [("true", True), ("1", True), ("yes", True), ("", False), ("0", False), ("false", False),
                      ("False", False), ("no", False)]:
        monkeypatch.setenv("CI", value)
        assert conftest.in_ci() is ci, value
    monkeypatch.delenv("CI")
    assert conftest.in_ci() is False
    # A skip blames a reference only if it names one that is indeed missing.
    assert conftest.missing_reference("no CUDA device here") is None
    assert conftest.missing_reference("could not import 'numpy'") is None
    torch_missing = conftest.missing_reference("PyTorch is not installed") == "torch"
    assert torch_missing is not conftest._importable("torch")


def test_a_skip_for_a_missing_tool_blames_it_only_when_it_is_missing(monkeypatch):
    conftest = load_conftest()
    reason = "building the examples needs cc, c++ and cmake"
    monkeypatch.setattr(conftest.sys, "executable", "/nonexistent/bin/python")  # no tools beside it
    monkeypatch.setattr(conftest.shutil, "which", lambda tool: None if tool == "cmake" else f"/usr/bin/{tool}")
    assert conftest.missing_tool(reason) == "cmake"
    assert conftest.missing_tool("no pkg-config on PATH") is None  # found
    assert conftest.missing_tool("the accuracy fell") is None  # 'cc' inside a word is no tool
    monkeypatch.setattr(conftest.shutil, "which", lambda tool: None)
    assert conftest.missing_tool("no pkg-config on PATH") == "pkg-config"
    assert conftest.missing_tool("no CUDA device here") is None


def load_conftest():
    """The suite's conftest.py as a module of its own (another directory's conftest may already
    be the module named 'conftest')."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ember_suite_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(CONFTEST.parent))  # for strict_device
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CONFTEST.parent))
    return module


def test_the_isa_fixture_knows_every_isa_ember_has():
    all_isas = load_conftest().ALL_ISAS
    assert set(ember.available_isas()) <= set(all_isas)
    assert ember.available_isas() == [i for i in all_isas if i in ember.available_isas()]  # lowest first
    assert all_isas[0] == "generic"
