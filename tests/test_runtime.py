"""Runtime settings, the info report, environment overrides and the command line."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import ember
from ember import kernels
from ember import backend


def run_python(code, **env):
    full_env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_info_reports_the_runtime(capsys):
    report = ember.info(as_dict=True)
    assert report["ember"] == ember.__version__
    assert report["isa"] == ember.get_isa()
    assert report["isa available"] == ember.available_isas()
    assert report["threads"] == ember.get_num_threads()
    assert isinstance(report["cuda built"], bool)
    assert capsys.readouterr().out == ""
    assert ember.info() is None
    text = capsys.readouterr().out
    for key in ("ember", "isa", "threads", "cuda built", "cuda devices", "gemm kernel"):
        assert key in text
    assert ember.get_isa() in text and ember.__version__ in text


def test_available_isas_start_with_generic():
    isas = ember.available_isas()
    assert isas[0] == "generic"
    assert set(isas) <= {"generic", "avx2", "avx512", "avx512_bf16", "amx"}
    assert isas == [i for i in ("generic", "avx2", "avx512", "avx512_bf16", "amx") if i in isas]  # lowest first
    assert ember.get_isa() in isas


def test_set_isa_validates():
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        ember.set_isa("sse9")
    with pytest.raises(TypeError):
        ember.set_isa(2)


def test_cpu_features_can_be_switched_off_for_the_dispatch():
    """allow_cpu_feature hides a feature from the dispatch (the quantized matmul's feature-gated
    kernel sets) and says what it was; only the features the dispatch reads are named."""
    from ember import _C

    features = _C.cpu_features()
    assert set(features) == {"avx2_fma", "avx512", "avx512_vnni", "avx512_vbmi", "avx512_bf16", "amx"}
    rows = {isa for op, isa in _C.registered_kernels() if op == "qmatmul"}
    assert rows == {"generic", "avx2", "avx512+vnni", "avx512+vnni+vbmi"}
    for name in ("avx512_vnni", "avx512_vbmi"):
        assert _C.allow_cpu_feature(name, False) is True
        try:
            assert _C.allow_cpu_feature(name, False) is False
        finally:
            _C.allow_cpu_feature(name, True)
    with pytest.raises(ValueError, match="unknown CPU feature 'avx512_bf16'"):
        _C.allow_cpu_feature("avx512_bf16", False)
    with pytest.raises(TypeError):
        _C.allow_cpu_feature("avx512_vnni", "no")


@pytest.mark.parametrize("isa_name", ["generic", "avx2", "avx512", "avx512_bf16", "amx"])
def test_ember_isa_environment_forces_a_path(isa_name):
    result = run_python("import ember; print(ember.get_isa())", EMBER_ISA=isa_name)
    if isa_name in ember.available_isas():
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == isa_name
    else:
        assert result.returncode != 0
        assert f"ISA '{isa_name}' is not supported by this CPU" in result.stderr


def test_ember_isa_environment_rejects_unknown_names():
    result = run_python("import ember", EMBER_ISA="fastest")
    assert result.returncode != 0
    assert "EMBER_ISA: unknown ISA 'fastest'" in result.stderr


def test_thread_settings(num_threads):
    ember.set_num_threads(3)
    assert ember.get_num_threads() == 3
    for bad in (0, -1, 5000):
        with pytest.raises(ValueError, match=r"in \[1, 1024\]"):
            ember.set_num_threads(bad)
    with pytest.raises(TypeError):
        ember.set_num_threads(2.5)
    assert ember.get_num_threads() == 3


def test_thread_environment_override():
    result = run_python("import ember; print(ember.get_num_threads())", EMBER_NUM_THREADS="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    result = run_python("import ember", EMBER_NUM_THREADS="many")
    assert result.returncode != 0
    assert "EMBER_NUM_THREADS must be an integer between 1 and 1024, got 'many'" in result.stderr


def test_default_threads_follow_cpu_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity control on this platform")
    code = "import os, ember; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(ember._C.affinity_cpu_count())"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


# Forking with the pool's threads alive is the point; Python 3.12+ warns that it may deadlock.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_pool_survives_fork(rng, num_threads):
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    ember.set_num_threads(2)  # the parent's pool has a worker even on a 1-CPU machine
    a, b = rng.standard_normal((300, 200), dtype=np.float32), rng.standard_normal((200, 300), dtype=np.float32)
    want = kernels.gemm.gemm(a, b)
    pid = os.fork()
    if pid == 0:  # child: gemm must work (and be right) with a fresh pool
        ok = np.array_equal(kernels.gemm.gemm(a, b), want)
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish: its thread pool deadlocked")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def test_measure_fma_peak_is_positive():
    gflops = ember._C.measure_fma_peak(0.02, 1)
    assert gflops > 0.1
    with pytest.raises(ValueError, match="seconds"):
        ember._C.measure_fma_peak(0.0, 1)


def test_backend_dispatch():
    cpu = backend.get("cpu")
    assert cpu is backend.CPU and cpu.kernels is ember._C and cpu.xp is np
    assert backend.device_of(np.ones(2)) is cpu and backend.namespace(np.ones(2)) is np
    assert backend.device_of(np.float32(1)) is cpu  # scalars live anywhere; they count as the CPU's
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.get("tpu")
    with pytest.raises(TypeError, match="device must be a str"):
        backend.get(3)
    status = backend.cuda_status()
    if status != "available":
        # Why: not built, no driver, no GPU, or no CuPy -- said in the error and in ember.info().
        assert any(w in status for w in ("built without", "driver", "GPU", "CuPy")), status
        with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
            backend.get("cuda")
        with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
            ember.ones(2, device="cuda")
        assert ember.info(as_dict=True)["cuda"] == status


def test_cuda_module_imports_without_a_gpu():
    if not backend.cuda_built():
        pytest.skip("ember._cuda was not built here")
    from ember import _cuda

    n = _cuda.device_count()
    assert n >= 0
    assert _cuda.runtime_version() > 0
    if n == 0:
        with pytest.raises(ValueError, match="out of range"):
            _cuda.device_info(0)
    else:
        info = _cuda.device_info(0)
        assert info["multiprocessors"] > 0 and info["total_memory"] > 0


def test_cli_info_and_bench():
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    result = subprocess.run([sys.executable, "-m", "ember", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "isa" in result.stdout and ember.get_isa() in result.stdout
    result = subprocess.run([sys.executable, "-m", "ember", "bench", "gemm", "--shape", "32x16x8", "--rounds", "1"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "32x16x8" in result.stdout
    assert "ember bench [" in result.stderr  # progress: plain lines when stderr is not a terminal
    result = subprocess.run([sys.executable, "-m", "ember", "bench", "--shape", "3x0x4"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode != 0
    assert "MxKxN with positive integers" in result.stderr
