"""The only Python-side dispatch: which array module and which kernel module serve a device.

CPU: NumPy arrays and ``ember._C``. CUDA: CuPy arrays and ``ember._cuda`` (optional;
present when Ember was built with a CUDA compiler). Nothing else in the package
imports ``_cuda`` or CuPy directly.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import _C

DEVICES = ("cpu", "cuda")


def _load_cuda() -> ModuleType | None:
    try:
        return importlib.import_module("ember._cuda")
    except ImportError:
        return None


_cuda = _load_cuda()


def cuda_built() -> bool:
    """Whether the ``ember._cuda`` module was built into this installation."""
    return _cuda is not None


def cuda_device_count() -> int:
    """Visible CUDA devices (0 when ``_cuda`` is not built or no driver/GPU is present)."""
    return _cuda.device_count() if _cuda is not None else 0


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device


def kernels(device: str = "cpu") -> ModuleType:
    """The native kernel module serving ``device``."""
    if _check_device(device) == "cpu":
        return _C
    if _cuda is None:
        raise RuntimeError("device 'cuda' needs ember._cuda, which this installation was built without")
    if _cuda.device_count() == 0:
        raise RuntimeError("device 'cuda': no CUDA device is visible")
    return _cuda


def array_module(device: str = "cpu") -> ModuleType:
    """The array library that owns memory on ``device`` (NumPy or CuPy)."""
    if _check_device(device) == "cpu":
        import numpy

        return numpy
    kernels(device)
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError("device 'cuda' needs CuPy: pip install 'ember[cuda]'") from exc
    return cupy


def device_of(array) -> str:
    """'cuda' for arrays exposing ``__cuda_array_interface__``, else 'cpu'."""
    return "cuda" if hasattr(array, "__cuda_array_interface__") else "cpu"
