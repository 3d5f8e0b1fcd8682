"""Tensor as Python values and truth values, as PyTorch's: conversions (``item``, ``float()``,
``int()``, an index, ``format``), iteration, comparisons, the logical and bitwise operators
(``~``, ``&``, ``|``, ``^``) and ``any``/``all``. None of them records a graph."""

from __future__ import annotations

import numbers

import numpy as np

from . import _dtypes, backend
from .autograd.function import Variable


def _comparable(x):
    """``x`` as an operand of a comparison or bitwise op -- a tensor's array, a number or an
    array -- or None for anything else (None, a string, a list...), which compares unequal to a
    tensor, as in PyTorch."""
    if isinstance(x, Variable):
        return x._data
    if isinstance(x, (numbers.Number, np.bool_)) or type(x) is np.ndarray or backend.is_array(x):
        return x
    return None


class ConversionMixin:
    """Conversions, comparisons and logic of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

    def item(self):
        """The one element as a Python number."""
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(-1)[0].item()

    def tolist(self):
        return self._host().tolist()

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        """The sub-tensors along dim 0 (views, in the graph); a 0-d tensor has none to give."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

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
        if self._data.size != 1:
            raise TypeError(f"only a tensor of one element converts to {what}, got shape {self.shape}")
        return self._data.reshape(-1)[0].item()

    def __format__(self, spec: str) -> str:
        """A 0-d tensor formats as its value (``f"{loss:.4f}"``); any other tensor only with an
        empty spec (as ``str``), as in PyTorch."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return super().__format__(spec)

    def __bool__(self) -> bool:
        """The truth of a one-element tensor (``if loss > best:``); of more elements it is
        ambiguous, as in PyTorch: use ``.any()`` or ``.all()``."""
        if self._data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of {self._data.size} elements is ambiguous: use .any() "
                               "or .all()")
        return bool(self.item())

    # ---------------------------------------------------------------- comparisons
    def _compare(self, other, name):
        other = _comparable(other)
        if other is None:
            return NotImplemented
        return self._wrap(getattr(backend.namespace(self._data), name)(self._data, other))

    def __eq__(self, other):
        """Elementwise equality, a bool tensor; a tensor never equals a non-number (None, a
        string...): then False, as in PyTorch."""
        return self._compare(other, "equal")

    def __ne__(self, other):
        return self._compare(other, "not_equal")

    def __lt__(self, other):
        return self._compare(other, "less")

    def __le__(self, other):
        return self._compare(other, "less_equal")

    def __gt__(self, other):
        return self._compare(other, "greater")

    def __ge__(self, other):
        return self._compare(other, "greater_equal")

    __hash__ = object.__hash__  # by identity, despite the elementwise __eq__

    # ---------------------------------------------------------------- logic
    def _bitwise(self, other, name, symbol, reflected=False):
        """``self symbol other`` elementwise (``other symbol self`` when reflected), for bool
        and integer operands promoted as PyTorch's arithmetic: logical for bools."""
        other = _comparable(other)
        if other is None:
            return NotImplemented
        dtype = _dtypes.result_type(self._data, other)
        if dtype.kind == "f":
            raise TypeError(f"{symbol}: bitwise and logical ops take bool and integer tensors, got {dtype}")
        a = self._data.astype(dtype, copy=False)
        b = other.astype(dtype, copy=False) if hasattr(other, "shape") else _dtypes.scalar(other, dtype)
        return self._wrap(getattr(backend.namespace(a), name)(*((b, a) if reflected else (a, b))))

    def __and__(self, other):
        return self._bitwise(other, "bitwise_and", "&")

    def __rand__(self, other):
        return self._bitwise(other, "bitwise_and", "&", reflected=True)

    def __or__(self, other):
        return self._bitwise(other, "bitwise_or", "|")

    def __ror__(self, other):
        return self._bitwise(other, "bitwise_or", "|", reflected=True)

    def __xor__(self, other):
        return self._bitwise(other, "bitwise_xor", "^")

    def __rxor__(self, other):
        return self._bitwise(other, "bitwise_xor", "^", reflected=True)

    def __invert__(self):
        """Logical not of a bool tensor, bitwise not of an integer one."""
        if self.dtype.kind == "f":
            raise TypeError(f"~ (bitwise not) takes bool and integer tensors, got {self.dtype}")
        return self._wrap(backend.namespace(self._data).invert(self._data))

    def any(self, dim=None, keepdim=False):
        """Whether any element is nonzero: over all elements, or along ``dim`` (an int or a
        tuple of ints), a bool tensor (uint8 for a uint8 tensor, as in PyTorch)."""
        return self._truth("any", dim, keepdim)

    def all(self, dim=None, keepdim=False):
        """Whether every element is nonzero: see ``any``."""
        return self._truth("all", dim, keepdim)

    def _truth(self, what, dim, keepdim):
        xp = backend.namespace(self._data)
        axes = self._dims(dim, what)
        if axes is not None and self.ndim == 0:
            axes = ()
        out = getattr(xp, what)(self._data, axis=axes, keepdims=keepdim)
        return self._wrap(xp.asarray(out, dtype=np.uint8 if self.dtype == np.uint8 else np.bool_))
