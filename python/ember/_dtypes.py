"""The dtypes a tensor may have and PyTorch's rules between them: which dtype names are
accepted (``dtype``), and the dtype a binary op computes in (``result_type``)."""

from __future__ import annotations

import numpy as np

SUPPORTED = tuple(np.dtype(d) for d in (np.float32, np.float64, np.int64, np.int32, np.uint8, np.int8, np.bool_))
_NAMES = ", ".join(d.name for d in SUPPORTED)
FLOAT32, INT64, BOOL = np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_)


def dtype(value, what: str) -> np.dtype:
    """``value`` (a NumPy dtype, a type such as ``np.float32`` or ``float``, or a name such as
    ``'float32'``) as the dtype it names; a TypeError naming ``what`` when it names no dtype or one
    Ember's tensors do not have (float16, int16...)."""
    try:
        d = np.dtype(value)
    except TypeError:
        raise TypeError(f"{what}: {value!r} is not a dtype (Ember's dtypes: {_NAMES})") from None
    if d not in SUPPORTED:
        raise TypeError(f"{what}: dtype {d} is not supported (Ember's dtypes: {_NAMES})")
    return d


def category(d: np.dtype) -> int:
    """0 for bool, 1 for the integers, 2 for the floating dtypes: an op's result takes the highest."""
    return 2 if d.kind == "f" else 1 if d.kind in "iu" else 0


def _promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's ``promote_types``: the higher category's dtype, or within one category the
    dtype holding both (int32 and int64: int64; uint8 and int8: int16, which Ember lacks)."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    d = np.promote_types(a, b)
    if d not in SUPPORTED:
        raise TypeError(f"{a} and {b} promote to {d}, which Ember's tensors do not support; cast one of them first")
    return d


def _wrapped(x) -> np.dtype | None:
    """The dtype a Python or NumPy scalar takes part in promotion with (PyTorch's defaults: bool,
    int64, float32), or None for an array or tensor."""
    if isinstance(x, (bool, np.bool_)):
        return BOOL
    if isinstance(x, (int, np.integer)):
        return INT64
    if isinstance(x, (float, np.floating)):
        return FLOAT32
    return None


def result_type(*operands) -> np.dtype:
    """The dtype PyTorch computes ``operands`` in: tensors (and arrays) of one or more
    dimensions decide, then 0-d ones, then Python and NumPy scalars; a later group counts only
    where its category is higher (float32 + a 0-d float64 tensor is float32, an int32 tensor + 5
    is int32, an int tensor + 0.5 is float32)."""
    dims = zero = wrapped = None
    for x in operands:
        d = _wrapped(x)
        if d is not None:
            wrapped = d if wrapped is None else _promote(wrapped, d)
            continue
        d = np.dtype(x.dtype)
        if d not in SUPPORTED:
            raise TypeError(f"an operand of dtype {d} is not supported (Ember's dtypes: {_NAMES})")
        if x.ndim:
            dims = d if dims is None else _promote(dims, d)
        else:
            zero = d if zero is None else _promote(zero, d)
    result = None
    for d in (dims, zero, wrapped):
        if result is None or (d is not None and category(d) > category(result)):
            result = d
    return result


def scalar(x, d: np.dtype):
    """Python or NumPy scalar ``x`` as a NumPy scalar of dtype ``d``; an integer beyond an
    integer dtype's range wraps around, as PyTorch's scalars do (uint8 + 300 adds 44)."""
    return np.asarray(x).astype(d)[()]
