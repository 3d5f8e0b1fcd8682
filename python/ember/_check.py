"""Argument checks shared by the Python entry points: a bad value is named before it reaches
native code (where pybind11 would only say "incompatible function arguments")."""

from __future__ import annotations

import numbers

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def integer(value, name: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """``value`` as a Python int in [lo, hi]: TypeError for a non-integer (bools included),
    OverflowError outside int64, ValueError outside [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{name} = {value} does not fit in a 64-bit integer")
    if not lo <= value <= hi:
        span = f">= {lo}" if hi == INT64_MAX else f"<= {hi}" if lo == INT64_MIN else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {span}, got {value}")
    return value


def real(value, name: str) -> float:
    """``value`` as a Python float: TypeError for what is not a real number (a str included),
    OverflowError for one beyond float64's range."""
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise OverflowError(f"{name} is too large: a {type(value).__name__} beyond float64's range") from None
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({e})") from None
