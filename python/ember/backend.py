"""The only Python-side choice of device: which array library owns a device's memory, and which
kernel module serves it.

A device is data: a :class:`Device` names its array type, its array namespace (``xp``: NumPy on
the CPU, CuPy on CUDA), its kernel module (``ember._C`` or ``ember._cuda``), how to allocate
there and how to move arrays to and from the host. Everything above the kernel doors finds a
device from its arrays (:func:`device_of`, :func:`namespace`) and never names NumPy, CuPy or a
kernel module itself, so a new device plugs in here (:func:`register`) without touching
autograd, ``nn``, the optimizers or the training loop. Nothing else in the package imports
``ember._C``'s kernels, ``ember._cuda`` or CuPy (the kernel doors in ``ember.kernels`` reach them
through the devices here).

``cuda`` is built on first use: asking for it when CuPy is missing, Ember was built without
its CUDA module, no driver is installed or no GPU is visible raises ``RuntimeError`` saying
which (:func:`cuda_status` reports it without raising).
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import numpy as np

from . import _C


class Device:
    """One place arrays live and kernels run.

    ``name``: what users write (``"cpu"``, ``"cuda"``). ``array_types``: the array classes that
    live there. ``xp``: the array namespace (NumPy's API). ``kernels``: the native module whose
    functions take these arrays (same names and arguments on every device). ``empty``:
    allocates an uninitialised array. ``from_host`` / ``to_host``: copies from and to a NumPy
    array. ``launch``: keyword arguments every kernel call on this device takes (CUDA: the
    current stream)."""

    # Elementwise work on arrays smaller than this stays in the array library (a native call's
    # fixed cost would dominate); from this size on it runs on the device's kernels.
    native_min_bytes = 0
    # Whether the GEMM kernel reads any strides in place (else an operand without a unit stride
    # is copied first).
    strided_gemm = False

    def __init__(self, name, array_types, xp, kernels, empty, from_host, to_host, launch=None, scatter_add=None,
                 errstate=None, native_min_bytes=0, strided_gemm=False, synchronize=None):
        self.name = name
        self._synchronize = synchronize
        self.native_min_bytes = native_min_bytes
        self.strided_gemm = strided_gemm
        self._errstate = errstate
        self.array_types = tuple(array_types)
        self.xp = xp
        self.kernels = kernels
        self.empty = empty
        self.from_host = from_host
        self.to_host = to_host
        self._launch = launch
        self._scatter_add = scatter_add

    def synchronize(self) -> None:
        """Wait until the work queued on this device so far has finished (on the CPU every call
        has finished when it returns; on a GPU, the current stream's)."""
        if self._synchronize is not None:
            self._synchronize()

    def launch(self) -> dict:
        """Keyword arguments for a kernel call on this device now (empty on the CPU)."""
        return self._launch() if self._launch is not None else {}

    def scatter_add(self, out, index, values) -> None:
        """``out[index] += values`` with repeated indices adding up (NumPy's ``add.at``)."""
        if self._scatter_add is not None:
            self._scatter_add(out, index, values)
        else:
            self.xp.add.at(out, index, values)

    def errstate(self, **kwargs):
        """A context that silences the array library's floating-point warnings (NumPy's
        ``errstate``; other libraries do not warn)."""
        return self._errstate(**kwargs) if self._errstate is not None else contextlib.nullcontext()

    def asarray(self, data, dtype=None):
        """``data`` as an array of this device: arrays of another device are moved through the
        host, Python data and NumPy arrays are copied in only when they are not already here."""
        if isinstance(data, self.array_types):
            return data if dtype is None or data.dtype == dtype else data.astype(dtype)
        other = device_of(data) if is_array(data) else None
        host = other.to_host(data) if other is not None and other is not self else np.asarray(data, dtype=dtype)
        return self.from_host(host if dtype is None else host.astype(dtype, copy=False))

    def __repr__(self) -> str:
        return f"device(type={self.name!r})"

    def __str__(self) -> str:
        return self.name


def _cpu_empty(shape, dtype):
    return _C.empty(tuple(shape), np.dtype(dtype))


CPU = Device("cpu", (np.ndarray,), np, _C, _cpu_empty, lambda a: a, np.asarray, errstate=np.errstate,
             native_min_bytes=_C.host_cache_min_bytes, strided_gemm=True)

_by_name: dict[str, Device] = {"cpu": CPU}
_by_type: dict[type, Device] = {np.ndarray: CPU}
_cuda_error: str | None = None


def register(device: Device) -> Device:
    """Make ``device`` known by its name and array types (for devices Ember does not ship, such
    as the strict test device of Ember's own tests)."""
    _by_name[device.name] = device
    for t in device.array_types:
        _by_type[t] = device
    return device


def is_array(a) -> bool:
    """Whether ``a`` is an array of a known device (NumPy arrays included; scalars not)."""
    if type(a) in _by_type or isinstance(a, tuple(_by_type)):
        return True
    return device_of(a) is not CPU  # registers device 'cuda' on meeting one of its arrays


def device_of(a) -> Device:
    """The device holding array ``a`` (NumPy arrays and scalars, and anything that is not an
    array of a known device, are the CPU's)."""
    t = type(a)
    if t is np.ndarray:
        return CPU
    dev = _by_type.get(t)
    if dev is not None:
        return dev
    for known, dev in list(_by_type.items()):
        if isinstance(a, known):
            _by_type[t] = dev
            return dev
    if "cuda" not in _by_name and hasattr(a, "__cuda_array_interface__") and _cuda_error is None:
        try:  # a CuPy array met before device 'cuda' was asked for
            get("cuda")
        except RuntimeError:
            return CPU
        return device_of(a) if t in _by_type or any(isinstance(a, k) for k in _by_type) else CPU
    return CPU


def add(a, b):
    """a + b; when both are large float arrays of one shape and dtype, the sum goes into memory
    from the device's allocator -- on the CPU its cache of mapped blocks -- rather than fresh
    pages that fault in and are zeroed on every call (a residual add, a gradient summed from two
    branches: every training step)."""
    if getattr(a, "shape", None) == getattr(b, "shape", ()) and getattr(a, "dtype", None) == getattr(b, "dtype", 0) \
            and a.dtype.kind == "f":
        dev = device_of(a)
        if a.nbytes >= max(dev.native_min_bytes, 1) and dev is device_of(b):
            return dev.xp.add(a, b, out=dev.empty(a.shape, a.dtype))
    return a + b


def namespace(a):
    """The array namespace of array ``a``: NumPy for host arrays, CuPy for CUDA arrays."""
    if type(a) is np.ndarray:
        return np
    return device_of(a).xp


def namespace_of(*values):
    """The array namespace of the first value that is an array of a device other than the CPU,
    else NumPy (numbers and NumPy scalars live anywhere)."""
    for v in values:
        if type(v) is not np.ndarray and type(v) in _by_type:
            return _by_type[type(v)].xp
    for v in values:
        if hasattr(v, "shape") and not isinstance(v, (np.ndarray, np.generic)):
            return device_of(v).xp
    return np


def _cuda_module() -> ModuleType:
    try:
        return importlib.import_module("ember._cuda")
    except ImportError:
        raise RuntimeError("device 'cuda' is not available: this Ember was built without its CUDA module "
                           "(build with nvcc on PATH, or EMBER_CUDA=ON to insist)") from None


def _make_cuda() -> Device:
    kernels = _cuda_module()
    if kernels.driver_version() == 0:
        raise RuntimeError("device 'cuda' is not available: no NVIDIA driver is installed")
    if kernels.device_count() == 0:
        raise RuntimeError("device 'cuda' is not available: the driver sees no GPU")
    try:
        import cupy
        import cupyx
    except ImportError:
        raise RuntimeError("device 'cuda' is not available: it needs CuPy for CUDA 13 "
                           "(pip install 'ember[cuda]')") from None

    def launch():
        return {"stream": cupy.cuda.get_current_stream().ptr}

    return Device("cuda", (cupy.ndarray,), cupy, kernels, lambda shape, dtype: cupy.empty(shape, dtype),
                  cupy.asarray, cupy.asnumpy, launch=launch, scatter_add=cupyx.scatter_add,
                  synchronize=lambda: cupy.cuda.get_current_stream().synchronize())


def get(name) -> Device:
    """The device called ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:0"``, or a ``Device``)."""
    global _cuda_error
    if isinstance(name, Device):
        return name
    if not isinstance(name, str):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {type(name).__name__}")
    key = "cuda" if name in ("cuda", "cuda:0") else name
    dev = _by_name.get(key)
    if dev is not None:
        return dev
    if key != "cuda":
        raise ValueError(f"unknown device {name!r}; known: {sorted(set(_by_name) | {'cuda'})}")
    if _cuda_error is not None:
        raise RuntimeError(_cuda_error)
    try:
        return register(_make_cuda())
    except RuntimeError as exc:
        _cuda_error = str(exc)
        raise


def cuda_status() -> str:
    """'available', or why device 'cuda' is not (not built, no driver, no GPU, no CuPy)."""
    try:
        get("cuda")
    except RuntimeError as exc:
        return str(exc).replace("device 'cuda' is not available: ", "")
    return "available"


def cuda_built() -> bool:
    """Whether the ``ember._cuda`` module was built into this installation."""
    try:
        _cuda_module()
    except RuntimeError:
        return False
    return True


def cuda_device_count() -> int:
    """Visible CUDA devices (0 when ``_cuda`` is not built or no driver/GPU is present)."""
    return _cuda_module().device_count() if cuda_built() else 0


def cuda_device_info(index: int = 0) -> dict:
    """Name, compute capability, multiprocessors and memory of CUDA device ``index``."""
    return _cuda_module().device_info(index)


def cuda_versions() -> dict:
    """The CUDA runtime Ember was built with and the installed driver (0 where none), as CUDA
    numbers them (13000: 13.0)."""
    kernels = _cuda_module()
    return {"runtime": kernels.runtime_version(), "driver": kernels.driver_version()}
