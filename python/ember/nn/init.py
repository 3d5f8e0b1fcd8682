"""Parameter initialisations, with PyTorch's names and formulas (so a layer built here draws
from the same distributions as the same layer in PyTorch)."""

from __future__ import annotations

import math
import numbers

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor
from ..factories import default_generator


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {t.shape}")
    receptive = math.prod(t.shape[2:]) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


# PyTorch's calculate_gain: the gain of each nonlinearity it knows (leaky_relu's depends on its
# negative slope).
_GAINS = {**dict.fromkeys(("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                           "conv_transpose3d", "sigmoid"), 1.0),
          "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def _gain(nonlinearity: str, a, where: str) -> float:
    if nonlinearity == "leaky_relu":
        if isinstance(a, bool) or not isinstance(a, numbers.Real):
            raise ValueError(f"{where}: a (the negative slope) must be a number, got {a!r}")
        return math.sqrt(2.0 / (1 + a * a))
    if not isinstance(nonlinearity, str) or nonlinearity not in _GAINS:
        raise ValueError(f"{where}: unsupported nonlinearity {nonlinearity!r}; use one of "
                         f"{', '.join(sorted([*_GAINS, 'leaky_relu']))}")
    return _GAINS[nonlinearity]


def _kaiming(t: Tensor, a, mode, nonlinearity, where: str, draw) -> Tensor:
    """He initialisation of ``t``: ``draw(std)`` fills it, std = gain / sqrt(fan), after the
    arguments are checked (PyTorch's names and rules); an empty ``t`` is left as it is."""
    fan = mode.lower() if isinstance(mode, str) else mode  # PyTorch lowercases it
    if fan not in ("fan_in", "fan_out"):
        raise ValueError(f"{where}: mode {mode!r} not supported, please use one of 'fan_in', 'fan_out'")
    gain = _gain(nonlinearity, a, where)
    if t.size == 0:  # nothing to draw: a no-op, as in PyTorch (and no fan of 0 to divide by)
        return t
    fan_in, fan_out = _fans(t)
    return draw(gain / math.sqrt(fan_in if fan == "fan_in" else fan_out))


def _fill(t: Tensor, values) -> Tensor:
    """t's values from host ``values`` (random numbers are drawn on the host, so a seed gives the
    same weights on every device)."""
    t._data[...] = backend.device_of(t._data).asarray(values, t.dtype)
    t._bump()
    return t


@no_grad()
def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    g = (generator or default_generator()).numpy
    return _fill(t, g.uniform(a, b, t.shape))


@no_grad()
def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    g = (generator or default_generator()).numpy
    return _fill(t, g.normal(mean, std, t.shape))


@no_grad()
def constant_(t: Tensor, value: float) -> Tensor:
    t._data[...] = value
    t._bump()
    return t


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    """He initialisation: uniform in ±sqrt(3) gain / sqrt(fan), ``mode`` 'fan_in' or 'fan_out'
    choosing the fan, ``nonlinearity`` the gain (``a``: leaky_relu's negative slope)."""
    return _kaiming(t, a, mode, nonlinearity, "kaiming_uniform_",
                    lambda std: uniform_(t, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator))


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    """He initialisation: normal(0, gain / sqrt(fan)), the arguments as ``kaiming_uniform_``'s."""
    return _kaiming(t, a, mode, nonlinearity, "kaiming_normal_", lambda std: normal_(t, 0.0, std, generator))


def xavier_uniform_(t: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    if t.size == 0:  # nothing to draw: a no-op, as in PyTorch (and no fan of 0 to divide by)
        return t
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    if t.size == 0:  # nothing to draw: a no-op, as in PyTorch (and no fan of 0 to divide by)
        return t
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)
