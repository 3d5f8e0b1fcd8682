"""Process-wide settings of the CPU kernels and the ``info()`` report."""

from __future__ import annotations

import platform

from . import _C, backend


def get_num_threads() -> int:
    """Threads the CPU kernels use (EMBER_NUM_THREADS, else the CPUs in this process's affinity)."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads the CPU kernels use; ``n`` must be an integer in 1..1024."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_isa() -> str:
    """The instruction set the CPU kernels use: 'generic', 'avx2' or 'avx512'."""
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


class Info(dict):
    """What ``ember.info()`` returns: a dict that prints as a readable report."""

    def __str__(self) -> str:
        width = max(len(k) for k in self)
        lines = []
        for key, value in self.items():
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value) or "none"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"{key:<{width}}  {value}")
        return "\n".join(lines)

    __repr__ = __str__


def info() -> Info:
    """Version, chosen and available ISAs, CPU features, threads, and the CUDA build and devices."""
    feats = _C.cpu_features()
    report = Info()
    report["ember"] = _C.__version__
    report["python"] = platform.python_version()
    report["machine"] = platform.machine()
    report["isa"] = _C.get_isa()
    report["isa available"] = list(_C.available_isas())
    report["cpu features"] = [name for name, present in feats.items() if present]
    report["gemm kernel"] = _C.gemm_ukernel_name()
    report["threads"] = _C.get_num_threads()
    report["cpus (affinity)"] = _C.affinity_cpu_count()
    report["cuda built"] = backend.cuda_built()
    devices = []
    for i in range(backend.cuda_device_count()):
        d = backend.kernels("cuda").device_info(i)
        devices.append(f"{i}: {d['name']} (sm_{d['compute_capability'][0]}{d['compute_capability'][1]})")
    report["cuda devices"] = devices
    return report
