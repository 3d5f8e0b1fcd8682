"""Tensor's arithmetic operators (``+ - * / // % ** @``) and the type promotion of binary ops:
both sides are brought to the dtype PyTorch computes in (``_dtypes.result_type``) -- tensors
cast, differentiably between floating dtypes; arrays moved to the tensor's device; Python and
NumPy numbers made NumPy scalars -- before the op's Function runs. A Python number with a
floating tensor takes the scalar ops' shorter path."""

from __future__ import annotations

import numpy as np

from . import _dtypes, backend
from .autograd import functions as fns
from .autograd.function import Function, Variable

_NUMBERS = (float, int)


def _raw(x):
    return x._data if isinstance(x, Variable) else x


class ArithmeticMixin:
    """The arithmetic operators of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

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
        """True division: integer operands give float32, as in PyTorch."""
        c = self._number(other)
        return fns.DivFn.apply(*_operands(self, other, floating=True)) if c is None else \
            fns.DivScalarFn.apply(self, c)

    def __rtruediv__(self, other):
        return fns.DivFn.apply(*_operands(other, self, floating=True))

    def __floordiv__(self, other):
        """The quotient rounded down (PyTorch's ``floor_divide``); no gradient. Integer division
        by zero is a ZeroDivisionError."""
        return _floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _floor_divide(other, self)

    def __mod__(self, other):
        """The remainder with the divisor's sign, as Python's ``%`` (PyTorch's ``remainder``);
        differentiable."""
        return _remainder(self, other)

    def __rmod__(self, other):
        return _remainder(other, self)

    def floor_divide(self, other):
        """``self // other``."""
        return _floor_divide(self, other)

    def remainder(self, other):
        """``self % other``."""
        return _remainder(self, other)

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


class RemainderFn(Function):
    """a - b * floor(a / b), the remainder with b's sign; d/da = 1, d/db = -floor(a / b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        with backend.device_of(a).errstate(divide="ignore", invalid="ignore"):  # x % 0.0 is NaN
            return backend.namespace_of(a, b).remainder(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        with backend.device_of(g).errstate(divide="ignore", invalid="ignore"):
            return (fns.unbroadcast(g, a.shape) if need[0] else None,
                    fns.unbroadcast(-g * backend.namespace_of(a, b).floor_divide(a, b), b.shape) if need[1] else None)


def _operands(a, b, floating=False) -> tuple:
    """The two sides of a binary op, at least one a Tensor, in the dtype PyTorch's promotion
    gives them (a floating one, float32 for integers, when ``floating``)."""
    if isinstance(a, Variable) and isinstance(b, Variable) and a._data.dtype == b._data.dtype and \
            (not floating or a._data.dtype.kind == "f"):
        return a, b  # the common case, kept short
    like = a if isinstance(a, Variable) else b
    if not isinstance(like, Variable):
        raise TypeError("at least one argument must be a Tensor")
    return _promoted(like, (a, b), floating)


def _promoted(like, operands, floating=False) -> tuple:
    """``operands`` in the dtype they compute in (``_dtypes.result_type``; a floating one when
    ``floating``): tensors cast (differentiably between floating dtypes), arrays moved to
    ``like``'s device, Python and NumPy numbers made NumPy scalars."""
    dev = backend.device_of(like._data)
    values = []
    for x in operands:
        if not isinstance(x, (Variable, bool, int, float, np.generic)):
            x = dev.asarray(x)
            if x.dtype.kind not in "biuf":
                raise TypeError(f"unsupported operand of dtype {x.dtype} for a tensor op")
        values.append(x)
    dtype = _dtypes.result_type(*(_raw(x) for x in values))
    if floating and dtype.kind != "f":
        dtype = _dtypes.FLOAT32
    return tuple(_cast(x, dtype) for x in values)


def _cast(x, dtype):
    """Operand ``x`` -- a tensor, an array or a number -- in ``dtype``."""
    if isinstance(x, Variable):
        return x.type(dtype)
    if isinstance(x, (bool, int, float, np.generic)):
        return _dtypes.scalar(x, dtype)
    return x.astype(dtype, copy=False)


def _division(a, b) -> tuple:
    """The promoted operands of ``//`` or ``%`` and the tensor among them; an integer division by
    zero is an error (NumPy would give 0)."""
    a, b = _operands(a, b)
    if np.dtype(a.dtype).kind in "biu" and (_raw(b) == 0).any():
        raise ZeroDivisionError("integer division or modulo by zero")
    return a, b, a if isinstance(a, Variable) else b


def _floor_divide(a, b):
    a, b, like = _division(a, b)
    ra, rb = _raw(a), _raw(b)
    with backend.device_of(like._data).errstate(divide="ignore", invalid="ignore"):
        return like._wrap(backend.namespace(like._data).asarray(backend.namespace_of(ra, rb).floor_divide(ra, rb)))


def _remainder(a, b):
    return RemainderFn.apply(*_division(a, b)[:2])
