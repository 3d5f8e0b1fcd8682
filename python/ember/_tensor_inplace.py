"""Tensor's in-place methods, as PyTorch's: ``x += y`` (and ``-=``, ``*=``, ``/=``, ``//=``,
``%=``, ``**=``, ``&=``, ``|=``, ``^=``), ``add_``, ``sub_``, ``mul_``, ``div_``, ``clamp_``,
``fill_``, ``copy_``, ``zero_`` and ``x[key] = value``.

The result is written into the tensor's own memory, so a change through a view reaches its
base, and the version counter moves, so a backward that saved the old values fails instead of
using the new ones. The tensor keeps its dtype: a result of a higher category than the tensor's
(an integer tensor += a float) is an error, as in PyTorch, never a silent cut.

The graph does not record in-place changes, so in grad mode they are refused where a gradient
would flow through them: on a leaf that requires grad, on a tensor computed from ones that do
(use the out-of-place op, ``y = y + x``), and with a value that requires grad. Under
``ember.no_grad()`` they work on every tensor: ``p -= lr * p.grad`` is a manual SGD step.
"""

from __future__ import annotations

import operator

import numpy as np

from . import _dtypes, backend
from ._tensor_arith import _raw
from .autograd import engine
from .autograd.function import Variable


def _inplace(op, symbol):
    """The in-place form of binary operator ``op``."""

    def method(self, other):
        return self._update(lambda: op(self, other), other)

    method.__doc__ = f"``self {symbol}= other``, in place."
    return method


class InplaceMixin:
    """The in-place methods of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

    def _bump(self) -> None:
        self._version[0] += 1

    def _check_inplace(self, value=None) -> None:
        """In-place changes are not recorded in the graph, so where a gradient would flow
        through them they are refused (never a silently wrong gradient)."""
        if not engine.is_grad_enabled():
            return
        if self.requires_grad and self._node is None:
            raise RuntimeError("a leaf tensor that requires grad is being modified in place: do it under "
                               "ember.no_grad()")
        if self._node is not None:
            raise RuntimeError(f"a tensor computed from ones that require grad (grad_fn=<{self._node.name()}>) is "
                               "being modified in place, which the graph would not record: use the out-of-place op "
                               "(y = y + x rather than y += x; ember.where or ember.cat rather than y[i] = v), or "
                               "do it under ember.no_grad()")
        if isinstance(value, Variable) and value.requires_grad:
            raise RuntimeError("a tensor that requires grad is being written into another in place, which the graph "
                               "would not record: use the out-of-place op (y = y + x rather than y += x; ember.where "
                               "or ember.cat rather than y[i] = v), or do it under ember.no_grad()")

    def _write(self, values, key=Ellipsis) -> None:
        """``self[key] = values`` in the storage, and the version moved."""
        if not getattr(self._data.flags, "writeable", True):
            raise RuntimeError("the tensor's memory is read-only: an expand()ed tensor, whose elements share memory, "
                               "or a read-only array; write into a clone() of it")
        self._data[key] = values
        self._bump()

    def _update(self, compute, value):
        """Write ``compute()``, an out-of-place result, into this tensor (see the module's notes)."""
        self._check_inplace(value)
        with engine.no_grad():
            result = compute()
        if result.shape != self.shape:
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(result.shape)}")
        if _dtypes.category(result.dtype) > _dtypes.category(self.dtype):
            raise RuntimeError(f"result type {result.dtype} can't be cast to the desired output type {self.dtype}")
        self._write(result._data)
        return self

    def add_(self, other, alpha=1):
        """``self += alpha * other``, in place."""
        return self._update(lambda: self + (other if alpha == 1 else other * alpha), other)

    def sub_(self, other, alpha=1):
        """``self -= alpha * other``, in place."""
        return self._update(lambda: self - (other if alpha == 1 else other * alpha), other)

    def mul_(self, other):
        """``self *= other``, in place."""
        return self._update(lambda: self * other, other)

    def div_(self, other):
        """``self /= other``, in place (true division: an error for an integer tensor, whose
        quotient is floating)."""
        return self._update(lambda: self / other, other)

    def clamp_(self, min=None, max=None):  # noqa: A002 (PyTorch's names)
        """``clamp(min, max)``, in place (an integer tensor takes integer bounds only)."""
        return self._update(lambda: self.clamp(min, max), None)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    __ifloordiv__ = _inplace(operator.floordiv, "//")
    __imod__ = _inplace(operator.mod, "%")
    __ipow__ = _inplace(operator.pow, "**")
    __iand__ = _inplace(operator.and_, "&")
    __ior__ = _inplace(operator.or_, "|")
    __ixor__ = _inplace(operator.xor, "^")

    def fill_(self, value):
        """Every element set to ``value`` (a number, or a one-element tensor), in place; the value
        is converted to the tensor's dtype (2.7 into an integer tensor is 2, as in PyTorch)."""
        if isinstance(value, Variable):
            if value.ndim:
                raise RuntimeError(f"fill_: value must be a number or a 0-d tensor, got a tensor of shape "
                                   f"{tuple(value.shape)}")
            value = backend.device_of(self._data).asarray(value._data)
        elif isinstance(value, (str, bytes)) or not isinstance(value, (int, float, np.number, np.bool_)):
            raise TypeError(f"fill_: value must be a number or a 0-d tensor, got {type(value).__name__}")
        self._check_inplace(value)
        self._write(value)
        return self

    def zero_(self):
        """Fill with zeros in place (a leaf that requires grad only under no_grad)."""
        return self.fill_(0)

    def copy_(self, src):
        """The elements of tensor ``src`` (broadcast to this tensor's shape, converted to its
        dtype, from any device) copied in, in place."""
        if not isinstance(src, Variable):
            raise TypeError(f"copy_: src must be a Tensor, got {type(src).__name__}")
        try:
            fits = np.broadcast_shapes(self.shape, src.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(f"copy_: src of shape {tuple(src.shape)} does not broadcast to the tensor's shape "
                               f"{tuple(self.shape)}")
        self._check_inplace(src)
        self._write(backend.device_of(self._data).asarray(src._data))
        return self

    def __setitem__(self, key, value):
        self._check_inplace(value)
        value = _raw(value)
        if type(value) is np.ndarray or backend.is_array(value):
            value = backend.device_of(self._data).asarray(value)
        self._write(value, self._key(key))
