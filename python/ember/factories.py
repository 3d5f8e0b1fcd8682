"""Making tensors: from data (``tensor``, ``from_numpy``, ``from_dlpack``), the factories
(``zeros``, ``ones``, ``full``, ``arange``...), the seeded random ones (``rand``, ``randn``,
``randint`` and a ``Generator``), the default device they use, and the allocation limit a model
rebuilt from a file allocates under."""

from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from . import _check, _dtypes, backend
from .autograd.function import Variable
from ._tensor_shape import _shape
from .tensor import Tensor, _named_device, _storage

# -------------------------------------------------------------------- creation


_default_device = ["cpu"]


def set_default_device(device) -> None:
    """The device ``tensor()``, the factories (``zeros``, ``randn``...) and so the layers'
    parameters use when no ``device=`` is given (``'cpu'`` at start)."""
    _default_device[0] = backend.get(device).name


def get_default_device() -> str:
    return _default_device[0]


def _device(device) -> backend.Device:
    return _named_device(_default_device[0] if device is None else device)


def _leaves(data):
    """The scalars of nested lists and tuples."""
    if isinstance(data, (list, tuple)):
        for x in data:
            yield from _leaves(x)
    else:
        yield data


def _from_python(data, source: np.ndarray) -> np.ndarray:
    """``source``, NumPy's reading of Python data (numbers, NumPy scalars, nested lists of them),
    in the dtype PyTorch gives that data: Python floats float32, but float64 where a NumPy float64
    (a scalar or an array) is among them; Python ints int64, an OverflowError beyond it (where
    NumPy would wrap them, or make float64 or objects of them)."""
    if source.dtype.kind not in "fuO":
        return source
    leaves = list(_leaves(data))
    if not any(isinstance(x, (float, np.floating)) for x in leaves):
        for x in leaves:
            if isinstance(x, int) and not isinstance(x, bool):
                _check.integer(x, "tensor: an element")
        return source
    double = any(isinstance(x, (np.float64, np.ndarray)) and x.dtype == np.float64 for x in leaves)
    return source.astype(np.float64 if double else np.float32, copy=False)


def tensor(data, dtype=None, requires_grad=False, device=None) -> Tensor:
    """A new tensor holding a copy of ``data``, on ``device`` (default: where an array of another
    device is, else the default device). Without ``dtype``, an array's or tensor's dtype, or for
    Python data PyTorch's choice: float32 for floats (float64 for NumPy float64 scalars), int64 for
    ints (an OverflowError beyond it), bool for bools."""
    source = _storage(data)
    if dtype is None and not isinstance(data, Variable) and not backend.is_array(data):
        source = _from_python(data, source)
    if device is None and type(source) is not np.ndarray and backend.is_array(source):
        dev = backend.device_of(source)
    else:
        dev = _device(device)
    arr = dev.asarray(source if dtype is None else source.astype(_dtypes.dtype(dtype, "tensor")))
    if arr is source or arr is getattr(data, "_data", None):
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (no copy); its dtype must be one Ember's tensors have."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy needs a numpy.ndarray, got {type(array).__name__}")
    _dtypes.dtype(array.dtype, "from_numpy (which never copies)")
    return Tensor(array)


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any DLPack producer (NumPy, CuPy, PyTorch, JAX...), on the
    producer's device: no copy (so its dtype must be one Ember's tensors have)."""
    kind = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else 1
    if kind == 1:  # DLPack's kDLCPU
        arr = np.from_dlpack(obj)
    elif kind in (2, 13):  # kDLCUDA, kDLCUDAManaged
        arr = backend.get("cuda").xp.from_dlpack(obj)
    else:
        raise BufferError(f"from_dlpack: DLPack device type {kind} is neither the CPU (1) nor CUDA (2)")
    _dtypes.dtype(arr.dtype, "from_dlpack (which never copies)")
    return Tensor(arr)


# -------------------------------------------------------------------- random numbers and factories


class Generator:
    """A seeded random source for ``rand``/``randn``/``randint``/dropout (NumPy's PCG64)."""

    def __init__(self, seed=None):
        self.manual_seed(seed)

    def manual_seed(self, seed):
        self._rng = np.random.default_rng(seed)
        return self

    @property
    def numpy(self) -> np.random.Generator:
        return self._rng


_default_generator = Generator()


def manual_seed(seed) -> Generator:
    """Seed the default generator (used when no ``generator=`` is given)."""
    return _default_generator.manual_seed(seed)


def default_generator() -> Generator:
    return _default_generator


def _dtype(dtype, what, default=np.float32) -> np.dtype:
    return _dtypes.dtype(default if dtype is None else dtype, what)


def _size(sizes, size, what) -> tuple:
    """The shape a factory makes: given as ``*sizes`` or as ``size=``, not both."""
    if size is not None:
        if sizes:
            raise TypeError(f"{what}: give the sizes positionally or as size=, not both")
        sizes = (size,)
    return _shape(sizes, what)


def _floating(dtype, what) -> np.dtype:
    """``dtype`` (float32 when None), which must be floating: the random factories draw reals."""
    dtype = _dtype(dtype, what)
    if dtype.kind != "f":
        raise TypeError(f"{what}: dtype must be floating (float32 or float64) to draw random reals, got {dtype}; "
                        "use randint for integers")
    return dtype


_allocation_limit = contextvars.ContextVar("ember_allocation_limit", default=None)


@contextlib.contextmanager
def allocation_limit(nbytes: int, what: str):
    """Within the block, the tensor factories (``empty``, ``zeros``, ``ones``, ``full``,
    ``rand``, ``randn``) refuse, with a ValueError naming ``what``, to allocate more than
    ``nbytes`` in all: a model rebuilt from a description in a file cannot allocate more than
    the file backs. Yields a list whose one item is the bytes allocated so far."""
    used = [0]
    token = _allocation_limit.set((nbytes, what, used))
    try:
        yield used
    finally:
        _allocation_limit.reset(token)


def _charge(shape, dtype) -> None:
    """Count an allocation against the limit in force (if any), before it is made."""
    limit = _allocation_limit.get()
    if limit is None:
        return
    nbytes, what, used = limit
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if used[0] + size > nbytes:
        raise ValueError(f"{what} asks for more memory than it may use: a tensor of shape {tuple(shape)} "
                         f"({size / 2**20:.1f} MiB) with {(nbytes - used[0]) / 2**20:.1f} MiB left of the "
                         f"{nbytes / 2**20:.1f} MiB allowed")
    used[0] += size


def _make(fill, shape, dtype, device, requires_grad) -> Tensor:
    """A tensor made on ``device`` by its namespace's ``fill`` (zeros, ones, empty...)."""
    dev = _device(device)
    dtype = _dtype(dtype, fill)
    _charge(shape, dtype)
    return Tensor(getattr(dev.xp, fill)(shape, dtype), requires_grad=requires_grad)


def zeros(*sizes, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros of the shape ``sizes`` give (ints, or one sequence of them) or ``size=``."""
    return _make("zeros", _size(sizes, size, "zeros"), dtype, device, requires_grad)


def ones(*sizes, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make("ones", _size(sizes, size, "ones"), dtype, device, requires_grad)


def empty(*sizes, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make("empty", _size(sizes, size, "empty"), dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value``; without ``dtype`` its dtype is the value's,
    as in PyTorch: bool for a bool, int64 for an int, float32 for a float."""
    if dtype is None:
        kind = np.asarray(fill_value).dtype.kind
        dtype = np.bool_ if kind == "b" else np.int64 if kind in "iu" else None
    xp = _device(device).xp
    shape, dtype = _shape((size,), "full"), _dtype(dtype, "full")
    _charge(shape, dtype)
    return Tensor(xp.full(shape, fill_value, dtype), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None) -> Tensor:
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    xp = _device(device).xp
    return Tensor(xp.arange(start, end, step, dtype=_dtype(dtype, "arange", np.int64 if ints else np.float32)))


def linspace(start, end, steps, dtype=None, device=None) -> Tensor:
    return Tensor(_device(device).xp.linspace(start, end, steps, dtype=_dtype(dtype, "linspace")))


def eye(n, m=None, dtype=None, device=None) -> Tensor:
    return Tensor(_device(device).xp.eye(n, m, dtype=_dtype(dtype, "eye")))


# Random numbers come from the host generator and are copied to the device, so a seed gives the
# same numbers on every device.


def rand(*sizes, size=None, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform numbers in [0, 1) of a floating ``dtype``."""
    shape, dtype = _size(sizes, size, "rand"), _floating(dtype, "rand")
    _charge(shape, np.float64)  # drawn in float64, then cast
    g = (generator or _default_generator).numpy
    return Tensor(g.random(shape, dtype=np.float64).astype(dtype), requires_grad=requires_grad,
                  device=_device(device))


def randn(*sizes, size=None, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal numbers of a floating ``dtype``."""
    shape, dtype = _size(sizes, size, "randn"), _floating(dtype, "randn")
    _charge(shape, np.float64)  # drawn in float64, then cast
    g = (generator or _default_generator).numpy
    return Tensor(g.standard_normal(shape).astype(dtype), requires_grad=requires_grad, device=_device(device))


def randint(low, high=None, size=(), generator=None, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    g = (generator or _default_generator).numpy
    return Tensor(g.integers(low, high, _shape((size,), "randint"), dtype=_dtype(dtype, "randint", np.int64)),
                  device=_device(device))


def _like(t: Tensor, dtype, device):
    return (dtype or t.dtype), (device or t.device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return zeros(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return ones(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return empty(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def rand_like(t: Tensor, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return rand(t.shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(t: Tensor, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return randn(t.shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)
