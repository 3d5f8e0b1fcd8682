"""Training utilities."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor
from ..factories import tensor, zeros


def _vector_norm(a, p: float) -> float:
    """The ``p``-norm of array ``a`` viewed as one vector, as ``torch.linalg.vector_norm`` gives
    it: p=inf the largest |a|, -inf the smallest, 0 the count of non-zeros, else
    (sum |a|^p)^(1/p) (a zero makes a negative p's norm 0)."""
    if a.size == 0 and (p < 0 or p == math.inf):
        raise ValueError(f"clip_grad_norm_: norm_type={p} has no value for an empty gradient (it takes the "
                         f"{'smallest' if p < 0 else 'largest'} of no values)")
    xp = backend.namespace(a)
    a = xp.abs(a.reshape(-1).astype("float64"))
    if p == math.inf:
        return float(a.max())
    if p == -math.inf:
        return float(a.min())
    if p == 0:
        return float(xp.count_nonzero(a))
    with backend.device_of(a).errstate(divide="ignore"):  # 0 ** p for p < 0: inf, so the norm is 0
        return float((a ** p).sum()) ** (1.0 / p)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients in place by ``min(1, max_norm / (total + 1e-6))``, ``total`` their
    total ``norm_type``-norm, which it returns (before clipping). PyTorch's semantics: the total
    is the norm of each gradient's norm -- for ``inf`` the largest |g|, for ``-inf`` the smallest,
    for 0 the number of gradients with a non-zero -- and a NaN total makes the gradients NaN
    (``error_if_nonfinite=True``: a RuntimeError instead, when it is NaN or infinite)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    try:
        max_norm, p = float(max_norm), float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"clip_grad_norm_: max_norm and norm_type must be numbers, got max_norm={max_norm!r} and "
                        f"norm_type={norm_type!r}") from None
    grads = [q.grad._data for q in params if q.grad is not None]
    if not grads:
        return zeros(())
    xp = backend.namespace(grads[0])
    total = _vector_norm(xp.asarray([_vector_norm(g, p) for g in grads], dtype="float64"), p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total} (norm_type={p}), so they "
                           "cannot be clipped; error_if_nonfinite=False scales them by it anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:  # NaN too: the gradients become NaN, as in PyTorch
        for g in grads:
            g *= g.dtype.type(coef)
    return tensor(total, device=backend.device_of(grads[0]).name)
