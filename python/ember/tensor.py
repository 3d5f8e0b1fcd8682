"""Tensor: an array with reverse-mode autograd, on any device Ember knows.

A Tensor's storage is an array of its device -- a NumPy array on the CPU (``Tensor.numpy()``
and ``__array__`` share it, without copies), a CuPy array on CUDA -- and ``Tensor.device`` is
read from it. Differentiable ops are the Functions of ``autograd``; the Tensor methods
and operators below call them. Moving between devices is explicit (``to``, ``cpu``, ``cuda``)
and differentiable; an op whose tensors live on two devices is an error naming both.

Parts of Tensor live in mixins of their own: the arithmetic operators and type promotion in
``_tensor_arith``, the in-place methods in ``_tensor_inplace``, the conversions, comparisons and
logic in ``_tensor_convert``, the autograd attributes and hooks in ``_tensor_autograd``, the
reductions in ``_tensor_reduce``, the shapes (and how dims are checked) in ``_tensor_shape``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import _dtypes, backend
from ._tensor_arith import ArithmeticMixin, _operands, _promoted, _raw
from ._tensor_autograd import AutogradMixin, _set_grad, _set_requires_grad
from ._tensor_convert import ConversionMixin
from ._tensor_inplace import InplaceMixin
from ._tensor_reduce import ReductionMixin
from ._tensor_shape import CloneFn, ShapeMixin
from .autograd import functions as fns
from .autograd import nn_functions as nn_fns
from .autograd import shape_functions as shape_fns
from .autograd.function import Function, Variable
from .kernels import gemm as gemm_kernels


def _storage(data):
    """data as an array of some device: device arrays as they are, anything else through NumPy."""
    if isinstance(data, Variable):
        return data._data
    if type(data) is np.ndarray or backend.is_array(data):
        return data
    if hasattr(data, "__cuda_array_interface__"):  # a PyTorch or Numba CUDA array: shared, not copied
        return backend.get("cuda").xp.asarray(data)
    return np.asarray(data)


def _named_device(device) -> backend.Device:
    """The device ``device`` names (a name such as ``'cuda'``, or a ``Device``); ``'cpu:0'`` is
    the CPU, as in PyTorch."""
    return backend.get("cpu" if device == "cpu:0" else device)


class Size(int):
    """A tensor's element count (an int, NumPy's ``size``) that, called, gives its shape or one
    dimension: PyTorch's ``size()`` and ``size(dim)``."""

    def __new__(cls, shape):
        obj = super().__new__(cls, math.prod(shape))
        obj.shape = tuple(shape)
        return obj

    def __call__(self, dim=None):
        if dim is None:
            return self.shape
        if not -len(self.shape) <= dim < len(self.shape):
            raise IndexError(f"dim {dim} is out of range for a tensor of {len(self.shape)} dimensions")
        return self.shape[dim]


class Tensor(ArithmeticMixin, AutogradMixin, InplaceMixin, ConversionMixin, ReductionMixin, ShapeMixin, Variable):
    """An n-dimensional array that can record the ops applied to it and differentiate them.

    ``Tensor(data)`` shares ``data``'s memory when it is an array of a known device (a NumPy or
    CuPy array) of a supported dtype; ``device=`` puts it on that device (a copy when it is
    elsewhere). From a Python list it is float32, as ``torch.Tensor``."""

    __slots__ = ()
    __array_priority__ = 1000  # numpy_array + tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False, device=None):
        arr = np.asarray(data, dtype=np.float32) if isinstance(data, (list, tuple)) else _storage(data)
        if device is not None:
            arr = _named_device(device).asarray(arr)
        if arr.dtype not in _dtypes.SUPPORTED:
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"Tensor: unsupported dtype {arr.dtype}")
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {arr.dtype}")
        self._data = arr
        _set_requires_grad(self, bool(requires_grad))
        _set_grad(self, None)
        self._node = None
        self._out_index = 0
        # A tensor over another's storage counts its changes with it, so a backward that saved the
        # other sees a change made through this one.
        self._version = data._version if isinstance(data, Variable) and arr is data._data else [0]

    @staticmethod
    def _wrap(arr, requires_grad=False) -> Tensor:
        """A Tensor over array ``arr`` (a NumPy scalar becomes a 0-d array); what ops return."""
        t = Tensor.__new__(Tensor)
        t._data = arr if type(arr) is np.ndarray or backend.is_array(arr) else np.asarray(arr)
        _set_requires_grad(t, requires_grad)
        _set_grad(t, None)
        t._node = None
        t._out_index = 0
        t._version = [0]
        return t

    # ---------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def device(self) -> str:
        """Where the storage lives: ``'cpu'``, ``'cuda'``, ..."""
        return backend.device_of(self._data).name

    def to(self, *args, device=None, dtype=None) -> Tensor:
        """This tensor on a device and/or in a dtype, as PyTorch's ``to``: ``to(device)``,
        ``to(dtype)``, ``to(device, dtype)``, ``to(other_tensor)`` (its device and dtype) or by
        keyword. Itself when nothing changes; otherwise a differentiable copy."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, backend.Device) or (isinstance(a, str) and not _names_dtype(a)):
                device = a
            else:
                dtype = a
        t = self if dtype is None else self.type(_dtypes.dtype(dtype, "to"))
        if device is None:
            return t
        target = _named_device(device)
        return t if backend.device_of(t._data) is target else ToDeviceFn.apply(t, target)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        """The number of dimensions (``ndim``)."""
        return self._data.ndim

    @property
    def size(self) -> Size:
        """The number of elements, NumPy's ``size``; called, the shape: PyTorch's ``size()`` and
        ``size(dim)``."""
        return Size(self._data.shape)

    def numel(self) -> int:
        return self._data.size

    @property
    def T(self) -> Tensor:  # noqa: N802 (PyTorch's name)
        """The transpose of a matrix; of another number of dims the dims reversed, with PyTorch's
        deprecation warning (use ``mT`` or ``permute``)."""
        if self.ndim != 2:
            warnings.warn(f"T on a tensor of {self.ndim} dims reverses its dims, which PyTorch deprecates: use .mT "
                          "for batches of matrices or .permute(...) to reverse the dims", UserWarning, stacklevel=2)
            return self.permute(tuple(range(self.ndim))[::-1])
        return self.transpose(0, 1)

    @property
    def mT(self) -> Tensor:  # noqa: N802 (PyTorch's name)
        """The transpose of each matrix of a batch: the last two dims swapped."""
        if self.ndim < 2:
            raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices, got a {self.ndim}-D "
                               "tensor")
        return self.transpose(-2, -1)

    # ---------------------------------------------------------------- interop
    def _host(self) -> np.ndarray:
        """The storage as a NumPy array (a copy from any other device)."""
        return self._data if type(self._data) is np.ndarray else backend.device_of(self._data).to_host(self._data)

    def numpy(self) -> np.ndarray:
        """The storage itself (no copy), for a CPU tensor. Not allowed while the tensor requires
        grad, nor for a tensor on another device (use ``.cpu().numpy()``)."""
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad: use tensor.detach().numpy()")
        if type(self._data) is not np.ndarray:
            raise TypeError(f"numpy() on a tensor on device '{self.device}': copy it to the host with "
                            "tensor.cpu().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        if type(self._data) is not np.ndarray:
            raise TypeError(f"a tensor on device '{self.device}' is not converted to a NumPy array implicitly; "
                            "use tensor.cpu().numpy()")
        if copy is False and dtype is not None and np.dtype(dtype) != self.dtype:
            raise ValueError(f"__array__: converting {self.dtype} to {np.dtype(dtype)} needs a copy")
        arr = self._data if dtype is None else self._data.astype(dtype, copy=False)
        return arr.copy() if copy else arr

    def __dlpack__(self, stream=None, **kwargs):
        return self._data.__dlpack__(**({} if stream is None else {"stream": stream}), **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    @property
    def __cuda_array_interface__(self):
        """The CUDA array interface of a CUDA tensor's storage (zero copy for CuPy, PyTorch,
        Numba...); AttributeError on other devices."""
        try:
            return self._data.__cuda_array_interface__
        except AttributeError:
            raise AttributeError(f"a tensor on device '{self.device}' has no __cuda_array_interface__") from None

    def __repr__(self) -> str:
        body = np.array2string(self._host(), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != np.float32 else ""
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def clone(self) -> Tensor:
        """A copy of the data with its own memory; differentiable (the gradient passes through)."""
        return CloneFn.apply(self, order="K")

    def contiguous(self) -> Tensor:
        """This tensor when its memory is row-major and dense already, else a differentiable copy
        that is."""
        return self if self._data.flags.c_contiguous else CloneFn.apply(self, order="C")

    def _floating(self) -> Tensor:
        """This tensor, in float32 when it is an integer or bool one: PyTorch's floating
        functions (exp, sigmoid...) take those so."""
        return self if self.dtype.kind == "f" else self.float()

    def _floating_only(self, what) -> None:
        """A TypeError unless this tensor is floating: PyTorch computes ``what`` for those only."""
        if self.dtype.kind != "f":
            raise TypeError(f"{what}: the input must be a floating-point tensor, got {self.dtype}; convert it with "
                            ".float()")

    def exp(self):
        return fns.ExpFn.apply(self._floating())

    def log(self):
        return fns.LogFn.apply(self._floating())

    def sqrt(self):
        return fns.SqrtFn.apply(self._floating())

    def abs(self):
        return fns.AbsFn.apply(self)

    def relu(self):
        return nn_fns.ReLUFn.apply(self)

    def sigmoid(self):
        return nn_fns.SigmoidFn.apply(self._floating())

    def tanh(self):
        return nn_fns.TanhFn.apply(self._floating())

    def softmax(self, dim):
        return nn_fns.SoftmaxFn.apply(self, dim=self._dim(dim, "softmax"))

    def log_softmax(self, dim):
        return nn_fns.LogSoftmaxFn.apply(self, dim=self._dim(dim, "log_softmax"))

    def matmul(self, other):
        return self @ other

    # ---------------------------------------------------------------- dtype casts (PyTorch's names)
    def type(self, dtype=None):
        """This tensor as ``dtype`` (itself when it has it): differentiable between floating
        dtypes; a cast to an integer or bool dtype is cut from the graph, as in PyTorch. Without
        ``dtype``, the name of the tensor's dtype (``'float32'``; PyTorch names a type such as
        ``'torch.FloatTensor'`` there)."""
        if dtype is None:
            return self.dtype.name
        dtype = _dtypes.dtype(dtype, "type")
        if dtype == self.dtype:
            return self
        if dtype.kind == "f" and self.dtype.kind == "f":
            return fns.CastFn.apply(self, dtype=dtype)
        return Tensor._wrap(self._data.astype(dtype))

    def float(self) -> Tensor:
        return self.type(np.float32)

    def double(self) -> Tensor:
        return self.type(np.float64)

    def half(self) -> Tensor:
        """float16: a TypeError, as Ember's tensors have no float16 (it lists those they have)."""
        return self.type(_dtypes.dtype(np.float16, "half"))

    def long(self) -> Tensor:
        return self.type(np.int64)

    def int(self) -> Tensor:
        return self.type(np.int32)

    def bool(self) -> Tensor:
        return self.type(np.bool_)

    def type_as(self, other) -> Tensor:
        return self.type(other.dtype)

    def clamp(self, min=None, max=None):  # noqa: A002 (PyTorch's names)
        """Values limited to [min, max]: each a number, a tensor or an array (broadcast), or
        None (not both). An integer tensor with a fractional bound becomes float32, as in
        PyTorch, rather than having the bound cut. Bounds get no gradient."""
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        bounds = []
        for b in (min, max):
            if isinstance(b, Tensor):
                if b.requires_grad:
                    raise TypeError("clamp: a bound that requires grad would get no gradient here; pass "
                                    "bound.detach()")
                b = backend.device_of(self._data).asarray(b._data)
            elif isinstance(b, np.ndarray) or backend.is_array(b):
                b = backend.device_of(self._data).asarray(b)
            elif b is not None and (isinstance(b, (str, bytes, bool)) or not isinstance(b, (int, float, np.number))):
                raise TypeError(f"clamp: bounds must be numbers, tensors or arrays, got {type(b).__name__} {b!r}")
            bounds.append(b)
        lo, hi = bounds
        if self.dtype.kind != "f" and any(b is not None and np.dtype(getattr(b, "dtype", type(b))).kind == "f"
                                          for b in bounds):
            return self.float().clamp(lo, hi)
        return fns.ClampFn.apply(self, lo=lo, hi=hi)

    def _key(self, key):
        """An index with its tensors and arrays on this tensor's device."""
        dev = backend.device_of(self._data)

        def one(k):
            if isinstance(k, Tensor) and k.dtype == np.uint8:
                raise IndexError("a uint8 tensor is an ambiguous index (PyTorch once read it as a mask, NumPy "
                                 "reads it as positions): index with .bool() for a mask or .long() for positions")
            k = _raw(k)
            return dev.asarray(k) if type(k) is np.ndarray or backend.is_array(k) else k

        return tuple(one(k) for k in key) if isinstance(key, tuple) else one(key)

    def __getitem__(self, key):
        return shape_fns.IndexFn.apply(self, key=self._key(key))


class ToDeviceFn(Function):
    """A copy to another device; the gradient goes back to the source's device."""

    @staticmethod
    def forward(ctx, a, target):
        ctx.source = backend.device_of(a)
        return target.asarray(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.source.asarray(g), None


def _names_dtype(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


# -------------------------------------------------------------------- functions of tensors


def maximum(a, b) -> Tensor:
    return fns.MaximumFn.apply(*_operands(a, b))


def minimum(a, b) -> Tensor:
    return fns.MinimumFn.apply(*_operands(a, b))


def matmul(a, b, out=None):
    """Matrix product with ``numpy.matmul``'s rules (batched, broadcast) on Ember's GEMM.

    With a Tensor on either side the result is a Tensor and the product is differentiable;
    with arrays it is an array, written into ``out`` when given (see ``ember.kernels.gemm.matmul``).
    """
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if out is not None:
            raise TypeError("matmul: out= takes arrays; with tensors the result is a new tensor")
        return a @ b if isinstance(a, Tensor) else b.__rmatmul__(a)
    return gemm_kernels.matmul(a, b, out)


def where(condition, a, b) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (tensors, arrays or numbers, broadcast; one of
    the three a tensor), promoted as PyTorch's arithmetic: ``where(mask, 1.0, 0.0)`` is float32."""
    like = next((x for x in (condition, a, b) if isinstance(x, Tensor)), None)
    if like is None:
        raise TypeError("where: at least one of condition, a and b must be a Tensor")
    cond = condition if isinstance(condition, Tensor) else \
        Tensor._wrap(backend.device_of(like._data).asarray(condition))
    return fns.WhereFn.apply(cond, *_promoted(like, (a, b)))


def _joined(tensors, dim, what, extra) -> tuple:
    """The tensors to cat or stack, checked and promoted to one dtype, and ``dim`` as a
    non-negative index."""
    if isinstance(tensors, Tensor) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{what}: expected a sequence of tensors, got {type(tensors).__name__}")
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError(f"{what}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: item {i} is a {type(t).__name__}, not a Tensor")
    first = tensors[0]
    if first.ndim == 0 and not extra:
        raise ValueError(f"{what}: zero-dimensional tensors cannot be concatenated (use stack)")
    d = first._dim(dim, what, extra=extra)
    for i, t in enumerate(tensors[1:], 1):
        same = t.shape == first.shape if extra else \
            t.ndim == first.ndim and all(a == b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != d)
        if not same:
            need = "the same shape" if extra else f"the same shape outside dim {dim}"
            raise ValueError(f"{what}: tensors need {need}; item 0 has {first.shape}, item {i} has {t.shape}")
    return _promoted(first, tensors), d


def cat(tensors, dim=0) -> Tensor:
    tensors, d = _joined(tensors, dim, "cat", 0)
    return shape_fns.CatFn.apply(d, *tensors)


def stack(tensors, dim=0) -> Tensor:
    tensors, d = _joined(tensors, dim, "stack", 1)
    return shape_fns.StackFn.apply(d, *tensors)
