"""Tensor: an array with reverse-mode autograd, on any device Ember knows.

A Tensor's storage is an array of its device -- a NumPy array on the CPU (``Tensor.numpy()``
and ``__array__`` share it, without copies), a CuPy array on CUDA -- and ``Tensor.device`` is
read from it. Differentiable ops are the Functions of ``autograd``; the Tensor methods
and operators below call them. Moving between devices is explicit (``to``, ``cpu``, ``cuda``)
and differentiable; an op whose tensors live on two devices is an error naming both.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from . import _check, backend
from .autograd import engine
from .autograd import functions as fns
from .autograd import nn_functions as nn_fns
from .autograd import shape_functions as shape_fns
from .autograd.function import Function, Variable
from .kernels import gemm as gemm_kernels

_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.bool_),
           np.dtype(np.uint8), np.dtype(np.int8)}


def _storage(data):
    """data as an array of some device: device arrays as they are, anything else through NumPy."""
    if isinstance(data, Variable):
        return data._data
    if type(data) is np.ndarray or backend.is_array(data):
        return data
    if hasattr(data, "__cuda_array_interface__"):  # a PyTorch or Numba CUDA array: shared, not copied
        return backend.get("cuda").xp.asarray(data)
    return np.asarray(data)


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


class Tensor(Variable):
    """An n-dimensional array that can record the ops applied to it and differentiate them.

    ``Tensor(data)`` shares ``data``'s memory when it is an array of a known device (a NumPy or
    CuPy array) of a supported dtype; ``device=`` puts it on that device (a copy when it is
    elsewhere)."""

    __slots__ = ()
    __array_priority__ = 1000  # numpy_array + tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False, device=None):
        arr = _storage(data)
        if device is not None:
            arr = backend.get(device).asarray(arr)
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
        # A tensor over another's storage counts its changes with it, so a backward that saved the
        # other sees a change made through this one.
        self._version = data._version if isinstance(data, Variable) and arr is data._data else [0]

    @staticmethod
    def _wrap(arr, requires_grad=False) -> Tensor:
        """A Tensor over array ``arr`` (a NumPy scalar becomes a 0-d array); what ops return."""
        t = Tensor.__new__(Tensor)
        t._data = arr if type(arr) is np.ndarray or backend.is_array(arr) else np.asarray(arr)
        t.requires_grad = requires_grad
        t.grad = None
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

    def to(self, device) -> Tensor:
        """This tensor on ``device`` (itself when it is there already; a differentiable copy
        otherwise)."""
        target = backend.get(device)
        if backend.device_of(self._data) is target:
            return self
        return ToDeviceFn.apply(self, target)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> Size:
        """The number of elements, NumPy's ``size``; called, the shape: PyTorch's ``size()`` and
        ``size(dim)``."""
        return Size(self._data.shape)

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

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor of one element, got shape {self.shape}")
        return self._data.reshape(-1)[0].item()

    def tolist(self):
        return self._host().tolist()

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

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __float__(self) -> float:
        return float(self._one("float"))

    def __int__(self) -> int:
        return int(self._one("int"))

    def __index__(self) -> int:
        """A one-element integer tensor as an index (``x[:n]``, ``range(n)``), as in PyTorch."""
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer tensors of a single element can be converted to an index, got dtype "
                            f"{self.dtype}")
        return int(self._one("an index"))

    def _one(self, what):
        if self.size != 1:
            raise TypeError(f"only a tensor of one element converts to {what}, got shape {self.shape}")
        return self._data.reshape(-1)[0].item()

    def __bool__(self) -> bool:
        """The truth of a one-element tensor (``if loss > best:``); of more elements it is
        ambiguous, as in PyTorch: use ``.any()`` or ``.all()``."""
        if self.size != 1:
            raise RuntimeError(f"the truth value of a tensor of {self.size} elements is ambiguous: use .any() or "
                               ".all()")
        return bool(self.item())

    # ---------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=False) -> None:
        """Accumulate the gradient of this tensor with respect to every leaf that requires grad
        into the leaf's ``.grad``. ``gradient`` is required unless the tensor has one element.
        The graph's saved values are freed afterwards unless ``retain_graph``."""
        engine.backward(self, gradient._data if isinstance(gradient, Variable) else gradient, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` in every backward once this leaf's ``.grad`` holds all that the
        backward sends it (PyTorch's hook of that name); returns a handle whose ``remove()``
        unregisters it."""
        return engine.register_post_accumulate_grad_hook(self, hook)

    def _accumulate(self, g, owned=False) -> None:
        # A backward may hand the same array to several inputs (an add's gradient flows to
        # both sides), so a leaf's .grad is its own copy unless the engine says nothing else
        # holds g: changing one leaf's gradient in place (clipping, a user's edit) must not
        # change another's. Locked: backward passes on several threads may reach one leaf.
        with _accumulating:
            if self.grad is None:
                if not (owned and g.dtype == self.dtype and g.flags.c_contiguous and
                        getattr(g.flags, "writeable", True)):
                    g = g.astype(self.dtype, copy=True)
                self.grad = Tensor._wrap(g)
            elif getattr(self.grad._data.flags, "writeable", True):  # in place, as PyTorch: a reference
                self.grad._data += g.astype(self.dtype, copy=False)  # to .grad sees the sum
                self.grad._bump()
            else:
                self.grad = Tensor._wrap(self.grad._data + g.astype(self.dtype, copy=False))

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

    def _check_inplace(self, value=None) -> None:
        """In-place changes are not recorded in the graph, so where a gradient would flow
        through them they are refused (never a silently wrong gradient)."""
        if not engine.is_grad_enabled():
            return
        if self.requires_grad and self._node is None:
            raise RuntimeError("a leaf tensor that requires grad is being modified in place; "
                               "do it under ember.no_grad()")
        if self._node is not None:
            raise RuntimeError(f"a tensor computed from ones that require grad (grad_fn=<{self._node.name()}>) is "
                               "being modified in place, which the graph would not record and its gradient would "
                               "miss: compute the change out of place (ember.where, ember.cat) or under "
                               "ember.no_grad()")
        if isinstance(value, Tensor) and value.requires_grad:
            raise RuntimeError("a tensor that requires grad is being written into another in place, which the graph "
                               "would not record: build the result out of place (ember.where, ember.cat) or do it "
                               "under ember.no_grad()")

    # ---------------------------------------------------------------- ops
    # A Python number operand takes the scalar ops' shorter path when the tensor is floating.
    def _number(self, other):
        """other as a scalar of this tensor's dtype when it is a Python number and the tensor is
        floating, else None (the general op takes it)."""
        if type(other) in _NUMBERS and self._data.dtype.kind == "f":
            return self._data.dtype.type(other)
        return None

    def __add__(self, other):
        c = self._number(other)
        return fns.AddFn.apply(*_operands(self, other)) if c is None else fns.AddScalarFn.apply(self, c)

    def __radd__(self, other):
        c = self._number(other)
        return fns.AddFn.apply(*_operands(other, self)) if c is None else fns.AddScalarFn.apply(self, c)

    def __sub__(self, other):
        c = self._number(other)
        return fns.SubFn.apply(*_operands(self, other)) if c is None else fns.AddScalarFn.apply(self, -c)

    def __rsub__(self, other):
        c = self._number(other)
        return fns.SubFn.apply(*_operands(other, self)) if c is None else fns.RSubScalarFn.apply(self, c)

    def __mul__(self, other):
        c = self._number(other)
        return fns.MulFn.apply(*_operands(self, other)) if c is None else fns.MulScalarFn.apply(self, c)

    def __rmul__(self, other):
        c = self._number(other)
        return fns.MulFn.apply(*_operands(other, self)) if c is None else fns.MulScalarFn.apply(self, c)

    def __truediv__(self, other):
        if self.dtype.kind != "f":  # true division of integers gives float32, as in PyTorch
            return self.float() / other
        c = self._number(other)
        return fns.DivFn.apply(*_operands(self, other)) if c is None else fns.DivScalarFn.apply(self, c)

    def __rtruediv__(self, other):
        if self.dtype.kind != "f":
            return other / self.float()
        return fns.DivFn.apply(*_operands(other, self))

    def __neg__(self):
        return fns.NegFn.apply(self)

    def __pow__(self, other):
        return fns.PowFn.apply(*_operands(self, other))

    def __rpow__(self, other):
        return fns.PowFn.apply(*_operands(other, self))

    def __matmul__(self, other):
        return fns.MatMulFn.apply(*_operands(self, other))

    def __rmatmul__(self, other):
        return fns.MatMulFn.apply(*_operands(other, self))

    def exp(self):
        return fns.ExpFn.apply(self)

    def log(self):
        return fns.LogFn.apply(self)

    def sqrt(self):
        return fns.SqrtFn.apply(self)

    def abs(self):
        return fns.AbsFn.apply(self)

    def relu(self):
        return nn_fns.ReLUFn.apply(self)

    def sum(self, dim=None, keepdim=False):
        return fns.SumFn.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        return fns.MeanFn.apply(self, dim=dim, keepdim=keepdim)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return shape_fns.ReshapeFn.apply(self, shape=shape)

    view = reshape

    def transpose(self, dim0, dim1):
        return shape_fns.TransposeFn.apply(self, dim0=dim0, dim1=dim1)

    def matmul(self, other):
        return self @ other

    # ---------------------------------------------------------------- dtype casts (PyTorch's names)
    def type(self, dtype) -> Tensor:
        """This tensor as ``dtype`` (itself when it has it): differentiable between floating
        dtypes; a cast to an integer or bool dtype is cut from the graph, as in PyTorch."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        if dtype.kind == "f" and self.dtype.kind == "f":
            return fns.CastFn.apply(self, dtype=dtype)
        return Tensor._wrap(self._data.astype(dtype))

    def float(self) -> Tensor:
        return self.type(np.float32)

    def double(self) -> Tensor:
        return self.type(np.float64)

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
        None. An integer tensor with a fractional bound becomes float32, as in PyTorch, rather
        than having the bound cut. Bounds get no gradient."""
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

    def max(self, dim=None, keepdim=False):
        """The largest element (a 0-d tensor; ties share the gradient); along ``dim``,
        ``(values, indices)`` as in PyTorch: the first largest element, or the first NaN, and
        its index. ``amax`` reduces several dims at once."""
        if dim is None:
            return fns.MaxReduceFn.apply(self, keepdim=keepdim, largest=True)
        return self._extreme(dim, keepdim, largest=True)

    def min(self, dim=None, keepdim=False):
        """The smallest element, or ``(values, indices)`` along ``dim``: see ``max``."""
        if dim is None:
            return fns.MaxReduceFn.apply(self, keepdim=keepdim, largest=False)
        return self._extreme(dim, keepdim, largest=False)

    def amax(self, dim=None, keepdim=False):
        """The largest values over ``dim`` (an int, a tuple of ints, or None for all); the
        gradient is shared evenly among tied maxima."""
        return fns.MaxReduceFn.apply(self, dim=dim, keepdim=keepdim, largest=True)

    def amin(self, dim=None, keepdim=False):
        """The smallest values over ``dim``: see ``amax``."""
        return fns.MaxReduceFn.apply(self, dim=dim, keepdim=keepdim, largest=False)

    def _extreme(self, dim, keepdim, largest) -> ValuesIndices:
        what = "max" if largest else "min"
        d = self._dim(dim, what)
        data = self._data.reshape(1) if self.ndim == 0 else self._data
        if data.shape[d] == 0:
            raise IndexError(f"{what}: dim {dim} has size 0, so it has no {'largest' if largest else 'smallest'} "
                             "element")
        xp = backend.namespace(data)
        index = (xp.argmax if largest else xp.argmin)(data, axis=d, keepdims=True)
        values = shape_fns.TakeAlongDimFn.apply(self, index, dim=d, keepdim=keepdim)
        # a copy: backward reads the saved index, which a change to the returned one must not move
        index = index.reshape(values.shape) if self.ndim == 0 or not keepdim else index
        return ValuesIndices(values, Tensor._wrap(index.copy()))

    def argmax(self, dim=None, keepdim=False):
        """Index of the largest element (the first one, or the first NaN), over all elements
        or along ``dim``; no gradient."""
        return self._arg(dim, keepdim, "argmax")

    def argmin(self, dim=None, keepdim=False):
        """Index of the smallest element: see ``argmax``."""
        return self._arg(dim, keepdim, "argmin")

    def _arg(self, dim, keepdim, what) -> Tensor:
        xp = backend.namespace(self._data)
        find = getattr(xp, what)
        if self.size == 0 and (dim is None or self.shape[self._dim(dim, what)] == 0):
            raise IndexError(f"{what} of an empty {'tensor' if dim is None else 'dim'}")
        if dim is None:
            return Tensor._wrap(xp.asarray(find(self._data)))
        if self.ndim == 0:
            self._dim(dim, what)
            return Tensor._wrap(xp.asarray(0))
        return Tensor._wrap(find(self._data, axis=self._dim(dim, what), keepdims=keepdim))

    def logsumexp(self, dim=None, keepdim=False):
        return fns.LogSumExpFn.apply(self, dim=dim, keepdim=keepdim)

    def var(self, dim=None, keepdim=False, correction=1):
        return fns.VarFn.apply(self, dim=dim, keepdim=keepdim, correction=correction)

    def std(self, dim=None, keepdim=False, correction=1):
        return fns.SqrtFn.apply(self.var(dim, keepdim, correction), zero_at_zero=True)

    def _dim(self, dim, what, extra=0) -> int:
        """``dim`` in [-n, n) for n = ndim + extra (a 0-d tensor has the one dim 0 or -1, as in
        PyTorch), as a non-negative index; else an IndexError naming ``what``."""
        n = max(self.ndim + extra, 1)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"{what}: dim must be an int, got {dim!r}")
        if not -n <= dim < n:
            raise IndexError(f"{what}: dim {dim} is out of range for a tensor of {self.ndim} dimensions "
                             f"(expected one in [{-n}, {n - 1}])")
        return int(dim) % n

    def flatten(self, start_dim=0, end_dim=-1):
        s, e = self._dim(start_dim, "flatten"), self._dim(end_dim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape[:s] + (math.prod(self.shape[s : e + 1]),) + self.shape[e + 1 :]
        return self.reshape(shape)

    def permute(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else dims
        index = [self._dim(d, "permute") for d in dims]
        if sorted(index) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dimensions")
        return shape_fns.PermuteFn.apply(self, dims=tuple(index))

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        d = self._dim(dim, "squeeze")
        if self.ndim == 0:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1 :]) if self.shape[d] == 1 else self

    def unsqueeze(self, dim):
        d = self._dim(dim, "unsqueeze", extra=1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return shape_fns.ExpandFn.apply(self, shape=shape)

    def split(self, split_size, dim=0):
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the sizes in a
        list: views, as in PyTorch."""
        if self.ndim == 0:
            raise ValueError("split: a 0-d tensor has no dim to split")
        d = self._dim(dim, "split")
        n = self.shape[d]
        if isinstance(split_size, (int, np.integer)) and not isinstance(split_size, bool):
            size = int(split_size)
            if size < 1 and not (size == 0 and n == 0):
                raise ValueError(f"split: split_size must be a positive int, got {split_size}")
            sizes = [size] * (n // size) + ([n % size] if n % size else []) if size else [0]
        else:
            try:
                sizes = [_check.integer(k, "split: each size", lo=0) for k in split_size]
            except TypeError:
                raise TypeError(f"split: split_size must be an int or a list of ints, got {split_size!r}") from None
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to dim {dim}'s {n}")
        return shape_fns.SplitFn.apply(self, sizes=sizes, dim=d)

    def chunk(self, chunks, dim=0):
        """At most ``chunks`` pieces of equal size along ``dim`` (the last may be smaller)."""
        chunks = _check.integer(chunks, "chunk: chunks", lo=1)
        if self.ndim == 0:
            raise ValueError("chunk: a 0-d tensor has no dim to split")
        n = self.shape[self._dim(dim, "chunk")]
        return self.split(max(-(-n // chunks), 1) if n else 0, dim)

    def sigmoid(self):
        return nn_fns.SigmoidFn.apply(self)

    def tanh(self):
        return nn_fns.TanhFn.apply(self)

    def softmax(self, dim):
        return nn_fns.SoftmaxFn.apply(self, dim=self._dim(dim, "softmax"))

    def log_softmax(self, dim):
        return nn_fns.LogSoftmaxFn.apply(self, dim=self._dim(dim, "log_softmax"))

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

    def __setitem__(self, key, value):
        self._check_inplace(value)
        value = _raw(value)
        if type(value) is np.ndarray or backend.is_array(value):
            value = backend.device_of(self._data).asarray(value)
        self._data[self._key(key)] = value
        self._bump()

    # comparisons record no graph
    def __eq__(self, other):  # noqa: D105
        return Tensor._wrap(backend.namespace(self._data).equal(self._data, _raw(other)))

    def __ne__(self, other):
        return Tensor._wrap(backend.namespace(self._data).not_equal(self._data, _raw(other)))

    def __lt__(self, other):
        return Tensor._wrap(backend.namespace(self._data).less(self._data, _raw(other)))

    def __le__(self, other):
        return Tensor._wrap(backend.namespace(self._data).less_equal(self._data, _raw(other)))

    def __gt__(self, other):
        return Tensor._wrap(backend.namespace(self._data).greater(self._data, _raw(other)))

    def __ge__(self, other):
        return Tensor._wrap(backend.namespace(self._data).greater_equal(self._data, _raw(other)))

    __hash__ = object.__hash__


class ValuesIndices(NamedTuple):
    """What ``max(dim)`` and ``min(dim)`` return, as PyTorch's ``return_types``: the extremes and
    their indices along the dim."""

    values: Tensor
    indices: Tensor


class ToDeviceFn(Function):
    """A copy to another device; the gradient goes back to the source's device."""

    @staticmethod
    def forward(ctx, a, target):
        ctx.source = backend.device_of(a)
        return target.asarray(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.source.asarray(g), None


_NUMBERS = (float, int)
_accumulating = threading.Lock()  # gradients summed into leaves, one at a time


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


def _operand(x, like: Tensor):
    """A Python number or array becomes an array of the tensor's dtype (as PyTorch's type
    promotion keeps float32 for float32 op scalar); tensors pass through."""
    if isinstance(x, Tensor):
        return x
    if type(x) in (float, int) and like.dtype.kind == "f":  # the common case, kept short
        return like.dtype.type(x)
    if type(x) is float:  # an integer or bool tensor with a float: float32, PyTorch's default dtype
        return np.float32(x)
    arr = _storage(x)
    if arr.ndim == 0 and type(arr) is np.ndarray:  # a number: a scalar lives on every device
        return like.dtype.type(arr) if arr.dtype.kind in "fiub" and like.dtype.kind == "f" else arr[()]
    arr = backend.device_of(like._data).asarray(arr)
    return arr.astype(like.dtype) if arr.dtype.kind in "fiub" and like.dtype.kind == "f" else arr


def _operands(a, b) -> tuple:
    """The two sides of a binary op, at least one a Tensor: the other as ``_operand`` makes it,
    and an integer or bool tensor meeting a floating operand cast to that floating dtype, as
    PyTorch promotes (NumPy would make int64 with float32 float64)."""
    if type(a) is type(b) is Tensor and a._data.dtype == b._data.dtype:  # the common case, kept short
        return a, b
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("at least one argument must be a Tensor")
    a, b = _operand(a, like), _operand(b, like)
    kind_a, kind_b = np.dtype(a.dtype).kind, np.dtype(b.dtype).kind
    if kind_a != "f" and kind_b == "f" and isinstance(a, Tensor):
        a = a.type(b.dtype)
    elif kind_b != "f" and kind_a == "f" and isinstance(b, Tensor):
        b = b.type(a.dtype)
    return a, b


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
    a, b = _operands(a, b)
    return fns.WhereFn.apply(_raw(condition), a, b)


def _joined(tensors, dim, what, extra) -> tuple:
    """The tensors to cat or stack, checked, and ``dim`` as a non-negative index."""
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
    return tensors, d


def cat(tensors, dim=0) -> Tensor:
    tensors, d = _joined(tensors, dim, "cat", 0)
    return shape_fns.CatFn.apply(d, *tensors)


def stack(tensors, dim=0) -> Tensor:
    tensors, d = _joined(tensors, dim, "stack", 1)
    return shape_fns.StackFn.apply(d, *tensors)
