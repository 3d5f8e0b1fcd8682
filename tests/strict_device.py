"""A test device whose arrays refuse NumPy, to prove on a machine without a GPU that nothing
above Ember's kernel doors computes with NumPy directly.

A ``StrictArray`` holds a host array but behaves as a CUDA (CuPy) array does towards NumPy:
``np.asarray`` and every ``np.*`` function or ufunc refuse it, and arithmetic with a NumPy array
is an error (NumPy scalars and Python numbers are fine). Code that finds the array namespace
through ``ember.backend`` gets ``NAMESPACE``, which unwraps, calls NumPy and wraps the results;
the device's kernels unwrap and call ``ember._C``. Memory is separate, as on a GPU: moving to
and from the host copies.
"""

from __future__ import annotations

import operator
import weakref

import numpy as np

from ember import backend

_C = backend.CPU.kernels
_wrappers: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id(ndarray) -> its StrictArray


def wrap(a):
    """The StrictArray over ndarray ``a`` (one per live array, so views find their base's)."""
    if type(a) is not np.ndarray:
        return a
    w = _wrappers.get(id(a))
    if w is None or w._a is not a:
        w = StrictArray(a)
        _wrappers[id(a)] = w
    return w


def unwrap(x):
    if isinstance(x, StrictArray):
        return x._a
    if type(x) is np.ndarray:
        raise TypeError("a NumPy array was mixed with arrays of device 'strict' (as with CuPy, move it there first)")
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v) for v in x)
    return x


def _wrap_result(r):
    if type(r) is np.ndarray:
        return wrap(r)
    if isinstance(r, np.generic):  # NumPy gives scalars where CuPy gives 0-d arrays
        return wrap(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap_result(v) for v in r)
    if isinstance(r, list):
        return [_wrap_result(v) for v in r]
    return r


def _binary(op):
    def method(self, other):
        return _wrap_result(op(self._a, unwrap(other)))

    def reflected(self, other):
        return _wrap_result(op(unwrap(other), self._a))

    return method, reflected


def _inplace(op):
    def method(self, other):
        op(self._a, unwrap(other))
        return self

    return method


class StrictArray:
    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None  # np.ufunc(strict) raises; ndarray <op> strict defers to our reflected ops

    def __init__(self, a: np.ndarray):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion of an array of device 'strict' to a NumPy array is not allowed")

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented  # every np.* function refuses it

    # attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: wrap(self._a.T))
    base = property(lambda self: wrap(self._a.base) if type(self._a.base) is np.ndarray else None)

    def __getattr__(self, name):  # methods (sum, reshape, astype, copy, item...)
        attr = getattr(self._a, name)
        if not callable(attr):
            return attr

        def method(*args, **kwargs):
            return _wrap_result(attr(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

        return method

    def __getitem__(self, key):
        key = unwrap(key)
        r = self._a[key]
        if isinstance(r, np.generic):  # CuPy gives a 0-d view of the element, not a copy: so do we
            r = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return wrap(r)

    def __setitem__(self, key, value):
        self._a[unwrap(key)] = unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap_result(r) for r in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __neg__(self):
        return _wrap_result(-self._a)

    def __pos__(self):
        return self

    def __abs__(self):
        return _wrap_result(abs(self._a))

    def __invert__(self):
        return _wrap_result(~self._a)

    def __repr__(self):
        return f"strict({self._a!r})"

    __add__, __radd__ = _binary(operator.add)
    __sub__, __rsub__ = _binary(operator.sub)
    __mul__, __rmul__ = _binary(operator.mul)
    __truediv__, __rtruediv__ = _binary(operator.truediv)
    __floordiv__, __rfloordiv__ = _binary(operator.floordiv)
    __mod__, __rmod__ = _binary(operator.mod)
    __pow__, __rpow__ = _binary(operator.pow)
    __matmul__, __rmatmul__ = _binary(operator.matmul)
    __and__, __rand__ = _binary(operator.and_)
    __or__, __ror__ = _binary(operator.or_)
    __xor__, __rxor__ = _binary(operator.xor)
    __eq__ = _binary(operator.eq)[0]
    __ne__ = _binary(operator.ne)[0]
    __lt__ = _binary(operator.lt)[0]
    __le__ = _binary(operator.le)[0]
    __gt__ = _binary(operator.gt)[0]
    __ge__ = _binary(operator.ge)[0]
    __iadd__ = _inplace(operator.iadd)
    __isub__ = _inplace(operator.isub)
    __imul__ = _inplace(operator.imul)
    __itruediv__ = _inplace(operator.itruediv)
    __iand__ = _inplace(operator.iand)
    __ior__ = _inplace(operator.ior)
    __hash__ = None


class _Function:
    """A NumPy function (or ufunc, with its methods such as ``at``) over strict arrays."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args, **kwargs):
        return _wrap_result(self._fn(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

    def __getattr__(self, name):
        return _Function(getattr(self._fn, name))


class _Namespace:
    """NumPy's API over strict arrays (what ``backend.namespace`` returns for them)."""

    def __getattr__(self, name):
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            return _Function(attr)
        return attr  # dtypes, scalar types, constants


class _Kernels:
    """``ember._C`` over strict arrays: arguments unwrapped (lists too), results wrapped."""

    def __getattr__(self, name):
        fn = getattr(_C, name)

        def call(*args, **kwargs):
            return _wrap_result(fn(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

        return call


NAMESPACE = _Namespace()

STRICT = backend.Device(
    "strict", (StrictArray,), NAMESPACE, _Kernels(),
    empty=lambda shape, dtype: wrap(_C.empty(tuple(shape), np.dtype(dtype))),
    from_host=lambda a: wrap(np.array(a, copy=True)),
    to_host=lambda s: s._a.copy(),
    native_min_bytes=backend.CPU.native_min_bytes,
    strided_gemm=True,
)


def register() -> backend.Device:
    """Make device 'strict' known to Ember (idempotent)."""
    try:
        return backend.get("strict")
    except ValueError:
        return backend.register(STRICT)


__all__ = ["NAMESPACE", "STRICT", "StrictArray", "register", "unwrap", "wrap"]
