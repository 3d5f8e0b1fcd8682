"""gradcheck: compare backward's Jacobian with central differences, in float64."""

from __future__ import annotations

import numpy as np


class GradcheckError(AssertionError):
    """Backward disagrees with the finite-difference derivative."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3) -> bool:
    """Check ``fn``'s gradients with respect to every input that requires grad.

    ``inputs``: a tensor or a sequence of tensors (float64 for a meaningful check), on any
    device (the comparison is made on the host). For each
    output element the backward pass gives one row of the Jacobian; central differences
    ``(f(x + eps) - f(x - eps)) / 2 eps`` give it numerically. Raises GradcheckError naming the
    input, the element and both values when they differ by more than ``atol + rtol * |numerical|``;
    returns True otherwise.
    """
    from ..tensor import Tensor

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad")
    for i in wrt:
        if inputs[i].dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 for a meaningful check")

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    outs = outputs()
    for k, out in enumerate(outs):
        n_out = out.size
        analytic = {i: np.zeros((n_out, inputs[i].size)) for i in wrt}
        for e in range(n_out):
            for i in wrt:
                inputs[i].grad = None
            seed = np.zeros(out.shape)
            seed.reshape(-1)[e] = 1.0
            if out.requires_grad:
                out.backward(Tensor(seed, device=out.device), retain_graph=True)
            for i in wrt:
                g = inputs[i].grad
                if g is not None:
                    analytic[i][e] = g._host().reshape(-1)
        for i in wrt:
            x = inputs[i]._data
            if not getattr(x.flags, "writeable", True):
                raise ValueError(f"gradcheck: input {i} is read-only (an expanded view?): its elements are perturbed "
                                 "one by one, so pass a copy")
            numeric = np.zeros((n_out, x.size))
            for j in range(x.size):
                at = np.unravel_index(j, x.shape)  # in place whatever the strides (a reshape may copy)
                orig = x[at].item()  # a value: on CuPy x[at] is a 0-d view of the element
                x[at] = orig + eps
                plus = outputs()[k]._host().astype(np.float64).reshape(-1)
                x[at] = orig - eps
                minus = outputs()[k]._host().astype(np.float64).reshape(-1)
                x[at] = orig
                numeric[:, j] = (plus - minus) / (2 * eps)
            bad = ~np.isclose(analytic[i], numeric, rtol=rtol, atol=atol, equal_nan=True)
            if bad.any():
                e, j = np.argwhere(bad)[0]
                raise GradcheckError(f"gradcheck: output {k} element {e} with respect to input {i} element {j}: "
                                     f"backward gives {analytic[i][e, j]!r}, finite differences {numeric[e, j]!r}")
    for i in wrt:
        inputs[i].grad = None
    return True
