"""What a benchmark record says about where it ran (CPU, its flags, the ISA level Ember chose,
threads, GPU and driver, versions) and the hardware limits measured beside it."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

# The CPU flags that decide which kernels run (the rest of /proc/cpuinfo's list is noise here).
_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
          "amx_int8", "avx_vnni")


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The kernel-relevant flags this CPU has."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        from .. import backend

        return sorted(name for name, present in backend.CPU.kernels.cpu_features().items() if present)
    return [f for f in _FLAGS if f in flags]


def last_level_cache_bytes() -> int | None:
    """The size of the largest CPU cache (Linux's sysfs), or None where it cannot be read."""
    sizes = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = os.listdir(base)
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if scale != 1 else text
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else None


def gpu() -> dict | None:
    """The first CUDA device Ember can use (name, compute capability, driver and runtime), or None."""
    from .. import backend

    if backend.cuda_status() != "available":
        return None
    info = backend.cuda_device_info(0)
    return {"name": info["name"], "compute_capability": list(info["compute_capability"]), **backend.cuda_versions()}


def versions() -> dict:
    """Ember's, Python's, NumPy's, and each installed reference library's version."""
    import ember

    out = {"ember": ember.__version__, "python": platform.python_version(), "numpy": np.__version__}
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__version__", None):
        out["torch"] = str(torch.__version__)
    return out


def describe(threads) -> dict:
    """The machine part of a benchmark record."""
    from .. import backend

    kernels = backend.CPU.kernels
    return {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "isa": kernels.get_isa(), "threads": list(threads),
            "cpu_count": kernels.affinity_cpu_count(), "cache_bytes": last_level_cache_bytes(), "os": platform.system(),
            "gpu": gpu()}


# Read bandwidth is measured on a buffer this large: past any L3 this project meets.
BANDWIDTH_BYTES = 512 << 20


def fma_peak(threads: int, seconds: float = 0.1) -> float:
    """GFLOP/s of float32 FMAs in a register-only loop on ``threads`` threads: what a
    compute-bound kernel is measured against."""
    from .. import backend

    return float(backend.CPU.kernels.measure_fma_peak(seconds, threads))


def read_bandwidth(threads: int, nbytes: int = BANDWIDTH_BYTES, repeats: int = 2) -> float:
    """GB/s of reading a buffer far larger than the caches on ``threads`` threads: what a
    memory-bound kernel is measured against."""
    from .. import backend

    buf = np.ones(nbytes // 4, np.float32)
    return float(backend.CPU.kernels.measure_read_bandwidth(buf, repeats, threads))


LIMITS = {"flop": ("fma_peak", "GFLOP/s", fma_peak), "byte": ("read_bandwidth", "GB/s", read_bandwidth)}
