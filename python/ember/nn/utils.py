"""Training utilities."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor
from ..factories import tensor, zeros


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients in place so that their total norm is at most ``max_norm``; returns
    the norm before clipping (PyTorch's semantics, ``norm_type`` inf included)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad._data for p in params if p.grad is not None]
    if not grads:
        return zeros(())
    xp = backend.namespace(grads[0])
    if norm_type == float("inf"):
        total = max(float(xp.max(xp.abs(g))) if g.size else 0.0 for g in grads)
    else:
        total = float(sum(float(xp.sum(xp.abs(g.astype("float64")) ** norm_type)) for g in grads)) ** (1 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= g.dtype.type(coef)
    return tensor(total, device=backend.device_of(grads[0]).name)
