"""Process-wide settings of the CPU kernels and the ``info()`` report."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import TextIO

from . import _check, backend

_C = backend.CPU.kernels  # the CPU module's runtime controls


def _native_dir(*parts) -> str:
    """A folder of the C API the package installs beside its compiled module (in an editable
    install, the build's install tree)."""
    path = Path(_C.__file__).resolve().parent.joinpath(*parts)
    if not path.is_dir():
        raise RuntimeError(f"this Ember was installed without its C library ({path} does not exist); "
                           "reinstall it with pip")
    return str(path)


def get_include() -> str:
    """The folder holding ``ember/ember.h`` (and the C++ wrappers ``ember/ember.hpp``): pass it
    to a C compiler as ``-I``."""
    return _native_dir("include")


def get_lib() -> str:
    """The folder holding ``libember.so``, the C library (``-L`` and ``-lember``; its
    ``pkgconfig/ember.pc`` serves pkg-config). It has its own copy of the kernels and of their
    settings (threads, ISA): changing them in Python does not change them there."""
    return _native_dir("lib")


def get_cmake_dir() -> str:
    """The folder of Ember's CMake package: ``cmake -DEmber_DIR=...`` then ``find_package(Ember)``
    and ``target_link_libraries(app Ember::ember)``."""
    return _native_dir("lib", "cmake", "Ember")


def get_num_threads() -> int:
    """Threads the CPU kernels use (EMBER_NUM_THREADS, else the CPUs in this process's affinity)."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads the CPU kernels use; ``n`` must be an integer in 1..1024."""
    _C.set_num_threads(_check.integer(n, "set_num_threads: n", 1, 1024))


def get_isa() -> str:
    """The instruction set the CPU kernels use: 'generic', 'avx2', 'avx512', 'avx512_bf16' (AVX-512
    with bf16 dot products) or 'amx' (with AMX tiles)."""
    return _C.get_isa()


def set_isa(name: str) -> None:
    """Force the CPU kernels' instruction set (as EMBER_ISA does at import).

    Raises ValueError for an unknown name or one this CPU does not support.
    """
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, got {type(name).__name__}")
    _C.set_isa(name)


def available_isas() -> list[str]:
    """Instruction sets this CPU supports, lowest first."""
    return list(_C.available_isas())


def host_cache_info() -> dict:
    """The cache of large host blocks that kernels' output arrays come from: ``cached_bytes``
    and ``cached_blocks`` idle now, ``limit_bytes``, and how many allocations it served
    (``hits``) or passed to the system (``misses``)."""
    return _C.host_cache_stats()


def empty_host_cache() -> None:
    """Return every idle cached block to the system (arrays in use are not affected)."""
    _C.host_cache_clear()


def set_host_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of idle blocks (default 1 GiB); 0 turns the cache off."""
    _C.host_cache_set_limit(_check.integer(nbytes, "set_host_cache_limit: nbytes", 0))


def _report_text(report: dict) -> str:
    width = max(len(k) for k in report)
    lines = []
    for key, value in report.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "none"
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)


def info(*, file: TextIO | None = None, as_dict: bool = False) -> dict | None:
    """Print the runtime report: version, ISA chosen and available, CPU features, threads, CUDA.

    With ``as_dict=True`` nothing is printed and the report is returned as a dict.
    """
    feats = _C.cpu_features()
    report = {
        "ember": _C.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "isa": _C.get_isa(),
        "isa available": list(_C.available_isas()),
        "cpu features": [name for name, present in feats.items() if present],
        "gemm kernel": _C.gemm_ukernel_name(),
        "threads": _C.get_num_threads(),
        "cpus (affinity)": _C.affinity_cpu_count(),
        "cuda built": backend.cuda_built(),
        "cuda": backend.cuda_status(),
    }
    devices = []
    for i in range(backend.cuda_device_count()):
        d = backend.cuda_device_info(i)
        devices.append(f"{i}: {d['name']} (sm_{d['compute_capability'][0]}{d['compute_capability'][1]})")
    report["cuda devices"] = devices
    if as_dict:
        return report
    print(_report_text(report), file=file if file is not None else sys.stdout)
    return None
