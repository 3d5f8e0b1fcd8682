"""Parameter initialisations, with PyTorch's names and formulas (so a layer built here draws
from the same distributions as the same layer in PyTorch)."""

from __future__ import annotations

import math

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor
from ..factories import default_generator


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {t.shape}")
    receptive = math.prod(t.shape[2:]) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


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
    if t.size == 0:  # nothing to draw: a no-op, as in PyTorch (and no fan of 0 to divide by)
        return t
    fan_in, fan_out = _fans(t)
    bound = math.sqrt(3.0) * _gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    if t.size == 0:  # nothing to draw: a no-op, as in PyTorch (and no fan of 0 to divide by)
        return t
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, _gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out), generator)


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
