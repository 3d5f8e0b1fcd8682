"""Tensor: an array with reverse-mode autograd.

On the CPU a Tensor's storage is a NumPy array (``Tensor.numpy()`` and ``__array__`` share
it, without copies); the device is data, looked up through ``backend``, so GPU storage can
slot in without changing the ops. Differentiable ops are the Functions of
``autograd.ops``; the Tensor methods and operators below call them.
"""

from __future__ import annotations

import numpy as np

from . import backend
from .autograd import engine
from .autograd import ops as F

_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.bool_),
           np.dtype(np.uint8)}


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate them."""

    __slots__ = ("_data", "requires_grad", "grad", "_node", "_out_index", "_version", "__weakref__")
    __array_priority__ = 1000  # numpy_array + tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        arr = data._data if isinstance(data, Tensor) else np.asarray(data)
        if arr.dtype not in _DTYPES:
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"Tensor: unsupported dtype {arr.dtype}")
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {arr.dtype}")
        self._data = arr
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self._out_index = 0
        self._version = [0]

    @classmethod
    def _wrap(cls, arr, requires_grad=False) -> Tensor:
        t = cls.__new__(cls)
        t._data = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        t.requires_grad = requires_grad
        t.grad = None
        t._node = None
        t._out_index = 0
        t._version = [0]
        return t

    def _xp(self):
        return backend.array_module(self.device)

    # ---------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        """The number of elements (PyTorch's ``numel()``)."""
        return self._data.size

    def numel(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    @property
    def T(self) -> Tensor:  # noqa: N802 (PyTorch's name)
        if self.ndim != 2:
            raise ValueError(f"T needs a 2-D tensor, got shape {self.shape}; use transpose(dim0, dim1)")
        return self.transpose(0, 1)

    # ---------------------------------------------------------------- interop
    def numpy(self) -> np.ndarray:
        """The storage itself (no copy). Not allowed while the tensor requires grad."""
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad: use tensor.detach().numpy()")
        return self._data

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor of one element, got shape {self.shape}")
        return self._data.reshape(-1)[0].item()

    def tolist(self):
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        if copy is False and dtype is not None and np.dtype(dtype) != self.dtype:
            raise ValueError(f"__array__: converting {self.dtype} to {np.dtype(dtype)} needs a copy")
        arr = self._data if dtype is None else self._data.astype(dtype, copy=False)
        return arr.copy() if copy else arr

    def __dlpack__(self, stream=None, **kwargs):
        return self._data.__dlpack__(**({} if stream is None else {"stream": stream}), **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != np.float32 else ""
        if self._node is not None:
            extra += f", grad_fn=<{self._node.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=False) -> None:
        """Accumulate the gradient of this tensor with respect to every leaf that requires grad
        into the leaf's ``.grad``. ``gradient`` is required unless the tensor has one element.
        The graph's saved values are freed afterwards unless ``retain_graph``."""
        engine.backward(self, gradient, retain_graph)

    def _accumulate(self, g) -> None:
        g = g.astype(self.dtype, copy=False)
        if self.grad is None:
            self.grad = Tensor._wrap(g.copy() if not g.flags.owndata or g.base is not None else g)
        else:
            self.grad = Tensor._wrap(self.grad._data + g)

    def detach(self) -> Tensor:
        """The same storage, cut from the graph."""
        t = Tensor._wrap(self._data)
        t._version = self._version
        return t

    def requires_grad_(self, requires_grad=True) -> Tensor:
        if self._node is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a tensor that is not a leaf: use detach()")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def _bump(self) -> None:
        self._version[0] += 1

    def zero_(self) -> Tensor:
        """Fill with zeros in place (a leaf that requires grad only under no_grad)."""
        self._check_inplace()
        self._data[...] = 0
        self._bump()
        return self

    def _check_inplace(self) -> None:
        if self.requires_grad and self._node is None and engine.is_grad_enabled():
            raise RuntimeError("a leaf tensor that requires grad is being modified in place; "
                               "do it under ember.no_grad()")

    # ---------------------------------------------------------------- ops
    def __add__(self, other):
        return F.Add.apply(self, _operand(other, self))

    def __radd__(self, other):
        return F.Add.apply(_operand(other, self), self)

    def __sub__(self, other):
        return F.Sub.apply(self, _operand(other, self))

    def __rsub__(self, other):
        return F.Sub.apply(_operand(other, self), self)

    def __mul__(self, other):
        return F.Mul.apply(self, _operand(other, self))

    def __rmul__(self, other):
        return F.Mul.apply(_operand(other, self), self)

    def __truediv__(self, other):
        return F.Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other):
        return F.Div.apply(_operand(other, self), self)

    def __neg__(self):
        return F.Neg.apply(self)

    def __pow__(self, other):
        return F.Pow.apply(self, _operand(other, self))

    def __rpow__(self, other):
        return F.Pow.apply(_operand(other, self), self)

    def __matmul__(self, other):
        return F.MatMul.apply(self, _operand(other, self))

    def __rmatmul__(self, other):
        return F.MatMul.apply(_operand(other, self), self)

    def exp(self):
        return F.Exp.apply(self)

    def log(self):
        return F.Log.apply(self)

    def sqrt(self):
        return F.Sqrt.apply(self)

    def abs(self):
        return F.Abs.apply(self)

    def relu(self):
        return F.ReLU.apply(self)

    def sum(self, dim=None, keepdim=False):
        return F.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        return F.Mean.apply(self, dim=dim, keepdim=keepdim)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return F.Reshape.apply(self, shape=shape)

    view = reshape

    def transpose(self, dim0, dim1):
        return F.Transpose.apply(self, dim0=dim0, dim1=dim1)

    def matmul(self, other):
        return self @ other

    # comparisons record no graph
    def __eq__(self, other):  # noqa: D105
        return Tensor._wrap(np.equal(self._data, _raw(other)))

    def __ne__(self, other):
        return Tensor._wrap(np.not_equal(self._data, _raw(other)))

    def __lt__(self, other):
        return Tensor._wrap(np.less(self._data, _raw(other)))

    def __le__(self, other):
        return Tensor._wrap(np.less_equal(self._data, _raw(other)))

    def __gt__(self, other):
        return Tensor._wrap(np.greater(self._data, _raw(other)))

    def __ge__(self, other):
        return Tensor._wrap(np.greater_equal(self._data, _raw(other)))

    __hash__ = object.__hash__


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


def _operand(x, like: Tensor):
    """A Python number or array becomes an array of the tensor's dtype (as PyTorch's type
    promotion keeps float32 for float32 op scalar); tensors pass through."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind in "fiub" and like.dtype.kind == "f":
        return arr.astype(like.dtype) if arr.ndim else like.dtype.type(arr)
    return arr


# -------------------------------------------------------------------- creation


def tensor(data, dtype=None, requires_grad=False) -> Tensor:
    """A new tensor holding a copy of ``data`` (floats default to float32)."""
    arr = np.array(data._data if isinstance(data, Tensor) else data, dtype=dtype, copy=True)
    if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.ndarray):
        arr = arr.astype(np.float32)
    return Tensor(arr, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy needs a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any DLPack producer (NumPy, PyTorch, JAX...): no copy."""
    return Tensor(np.from_dlpack(obj))
