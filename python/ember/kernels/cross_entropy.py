"""Fused softmax cross-entropy, PyTorch's ``F.cross_entropy`` semantics over (batch, classes)
logits, and the chunked linear + cross-entropy that never builds the batch x classes logits.

The kernels return per-row values in float64 (log-sum-exp, negative log-likelihood, smoothing
sum); the reductions and the backward's per-row scales are computed here, in the logits'
array namespace. float32 on the fast kernels; float32 and float64 on the references.
"""

from __future__ import annotations

import numpy as np

from .. import _check
from . import _common

_REDUCTIONS = ("mean", "sum", "none")


def _targets(dev, shape, target, weight, ignore_index, label_smoothing, reduction, dtype):
    """The checked (target, weight, eps) for logits of ``shape`` (batch, classes) and ``dtype``."""
    ignore_index = _check.integer(ignore_index, "ignore_index")
    xp = dev.xp
    t = target if isinstance(target, dev.array_types) else dev.asarray(target)
    if t.ndim == 2:
        if t.dtype != dtype:
            raise TypeError(f"soft targets must have dtype {dtype} (the logits'), got {t.dtype}")
        if t.shape != tuple(shape):
            raise ValueError(f"soft targets must have the logits' shape {tuple(shape)}, got {t.shape}")
        t = xp.ascontiguousarray(t)
    elif t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError("target must be integer class indices of shape (batch,) or a (batch, classes) "
                            f"probability matrix, got {t.dtype} of shape {t.shape}")
        if t.shape[0] != shape[0]:
            raise ValueError(f"target must have shape ({shape[0]},) (one class per row of logits), got {t.shape}")
        if t.dtype.kind == "u" and t.size and bool((t > _check.INT64_MAX).any()):  # would wrap as int64
            r = int(xp.argmax(t > _check.INT64_MAX))
            raise ValueError(f"target[{r}] = {int(t[r])} is not a class in [0, {shape[1]})")
        t = xp.ascontiguousarray(t.astype(np.int64, copy=False))
        bad = (t != ignore_index) & ((t < 0) | (t >= shape[1]))
        if t.size and bool(bad.any()):  # one reduction on the targets' device, then its verdict
            r = int(xp.argmax(bad))
            raise ValueError(f"target[{r}] = {int(t[r])} is neither a class in [0, {shape[1]}) nor ignore_index "
                             f"({ignore_index})")
    else:
        raise ValueError(f"target must be 1-D class indices or 2-D probabilities, got shape {t.shape}")
    w = None
    if weight is not None:
        w = weight if isinstance(weight, dev.array_types) else dev.asarray(weight)
        if w.dtype != dtype:
            raise TypeError(f"weight must have dtype {dtype} (the logits'), got {w.dtype}")
        if w.shape != (shape[1],):
            raise ValueError(f"weight must have shape ({shape[1]},) (one value per class), got {w.shape}")
        w = xp.ascontiguousarray(w)
    eps = _check.real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return t, w, eps, ignore_index


def _logits(logits, dev):
    z = _common.array(logits, "logits", dev, ndim=2, contiguous=True, layout=" (batch, classes)")
    if z.shape[1] < 1:
        raise ValueError(f"logits must have at least one class, got shape {z.shape}")
    return z


def _denominator(dev, t, w, ignore_index):
    """What 'mean' divides by -- the batch for soft targets, else the targets' total weight -- as
    a float64 scalar on the targets' device (no wait for the device)."""
    xp = dev.xp
    if t.ndim == 2:
        return xp.asarray(float(t.shape[0]))
    valid = t != ignore_index
    return (w[t[valid]].astype(np.float64) if w is not None else valid).sum(dtype=np.float64)


def _reduce(dev, rows, reduction, denominator, dtype):
    if reduction == "none":
        return rows.astype(dtype)
    total = rows.sum()
    if reduction == "mean":
        with dev.errstate(invalid="ignore", divide="ignore"):  # every target ignored: 0 / 0 = NaN, as PyTorch
            total = total / denominator
    return dev.xp.asarray(total, dtype=dtype)


def _row_losses(dev, fwd, z, t, w, eps, ignore_index):
    b, v = z.shape
    lse, nll, smooth = (dev.empty((b,), np.float64) for _ in range(3))
    fwd(z, t, w, eps, ignore_index, lse, nll, smooth, **dev.launch())
    rows = nll if t.ndim == 2 else (1.0 - eps) * nll + (eps / v) * smooth
    return rows, lse


def cross_entropy_fwd(logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                      return_lse=False, reference=False):
    """Cross-entropy of softmax(logits) against targets: PyTorch's ``F.cross_entropy``.

    ``logits``: (batch, classes). ``target``: integer class indices (batch,), or a (batch,
    classes) matrix of probabilities of the logits' dtype. ``weight``: optional per-class
    weights. Rows whose class is ``ignore_index`` contribute nothing; ``label_smoothing`` mixes
    the target with the uniform distribution. ``reduction``: 'mean' (over the targets' total
    weight, or the batch for probability targets), 'sum' or 'none' (one value per row). Host
    targets and weights are copied to the logits' device.

    One read of the logits; nothing of their size is written. With ``return_lse=True`` returns
    ``(loss, lse)``, lse being the float64 per-row log-sum-exp: all that
    :func:`cross_entropy_bwd` needs besides the logits.
    """
    dev = _common.device(logits=logits)
    z = _logits(logits, dev)
    t, w, eps, ignore_index = _targets(dev, z.shape, target, weight, ignore_index, label_smoothing, reduction, z.dtype)
    rows, lse = _row_losses(dev, _common.kernel(dev, "cross_entropy_fwd", reference, z.dtype), z, t, w, eps,
                            ignore_index)
    denominator = _denominator(dev, t, w, ignore_index) if reduction == "mean" else None
    loss = _reduce(dev, rows, reduction, denominator, z.dtype)
    return (loss, lse) if return_lse else loss


def _row_scales(dev, grad_output, t, b, reduction, denominator, ignore_index, dtype):
    """The backward's per-row factor: the loss's gradient (a scalar, or one per row with
    reduction='none'), over the mean's denominator (no gradient when it is 0: every target
    ignored), zero on ignored rows. Computed on the device, without waiting for it."""
    xp = dev.xp
    if isinstance(grad_output, dev.array_types):
        g = grad_output
    elif isinstance(grad_output, (list, tuple)):
        try:
            g = dev.asarray(grad_output, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as e:
            raise type(e)(f"grad_output must be a real number or a sequence of them: {e}") from None
    else:
        g = dev.asarray(_check.real(grad_output, "grad_output"))
    if reduction == "none":
        g = xp.broadcast_to(g, (b,)) if g.ndim == 0 else g
        if g.shape != (b,):
            raise ValueError(f"grad_output must be a scalar or have shape ({b},) with reduction='none', "
                             f"got shape {g.shape}")
        scale = g.astype(np.float64)
    else:
        if g.ndim != 0:
            raise ValueError(f"grad_output must be a scalar with reduction={reduction!r}, got shape {g.shape}")
        scale = xp.broadcast_to(g.astype(np.float64), (b,))
        if reduction == "mean":
            safe = xp.where(denominator != 0, denominator, 1.0)
            scale = xp.where(denominator != 0, scale / safe, 0.0)
    if t.ndim == 1:
        scale = xp.where(t == ignore_index, 0.0, scale)
    return xp.ascontiguousarray(scale.astype(dtype))


def cross_entropy_bwd(logits, target, lse, grad_output=1.0, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                      reduction="mean", out=None, reference=False):
    """Gradient of :func:`cross_entropy_fwd` with respect to the logits.

    ``lse`` is the forward's (``return_lse=True``); ``grad_output`` the loss's gradient (a
    scalar, or one per row with ``reduction='none'``); the other arguments as the forward's.
    Computes ``(softmax - target) · scale`` in one pass, reading the logits once and writing
    once. ``out=logits`` writes the gradient over the logits in place (training never needs
    them again); otherwise ``out`` is any C-contiguous array of their shape and dtype.
    """
    dev = _common.device(logits=logits, lse=lse, out=out)
    z = _logits(logits, dev)
    t, w, eps, ignore_index = _targets(dev, z.shape, target, weight, ignore_index, label_smoothing, reduction, z.dtype)
    b = z.shape[0]
    lse = _common.array(lse, "lse", dev, (_common.FLOAT64,), 1, contiguous=True)
    if lse.shape != (b,):
        raise ValueError(f"lse must be the forward's float64 log-sum-exps of shape ({b},), got shape {lse.shape}")
    denominator = _denominator(dev, t, w, ignore_index) if reduction == "mean" else None
    scale = _row_scales(dev, grad_output, t, b, reduction, denominator, ignore_index, z.dtype)
    dz = dev.empty(z.shape, z.dtype) if out is None else out
    _common.kernel(dev, "cross_entropy_bwd", reference, z.dtype)(z, t, w, eps, ignore_index, lse, scale, dz,
                                                                 **dev.launch())
    return dz


def cross_entropy_fwd_ref(logits, target, **kwargs):
    """Reference :func:`cross_entropy_fwd` (plain loops, double accumulation)."""
    return cross_entropy_fwd(logits, target, reference=True, **kwargs)


def cross_entropy_bwd_ref(logits, target, lse, grad_output=1.0, **kwargs):
    """Reference :func:`cross_entropy_bwd` (plain loops, double accumulation)."""
    return cross_entropy_bwd(logits, target, lse, grad_output, reference=True, **kwargs)


def linear_cross_entropy(hidden, weight, target, bias=None, *, class_weight=None, ignore_index=-100,
                         label_smoothing=0.0, reduction="mean", grad_output=1.0, chunk_bytes=64 << 20,
                         gradients=("hidden", "weight", "bias"), bf16=False):
    """Cross-entropy of the linear layer ``hidden @ weightᵀ + bias`` and its gradients, without
    ever building the batch x classes logits.

    ``hidden``: float32 (batch, features); ``weight``: float32 (classes, features); ``bias``:
    float32 (classes,) or None; ``target`` and the loss options as :func:`cross_entropy_fwd`
    (``class_weight`` is its ``weight``). Returns ``(loss, d_hidden, d_weight, d_bias)``
    (``d_bias`` None without a bias), the gradients those of ``grad_output`` times the loss
    (one value per row with ``reduction='none'``). ``gradients`` names those to compute, any of
    "hidden", "weight" and "bias"; the others are returned as None (with none, the loss costs one
    GEMM instead of three).

    Rows are processed in chunks of at most ``chunk_bytes`` of logits: each chunk's logits are
    computed by the GEMM, reduced to its loss and turned into its gradient in place, which two
    more GEMMs send into ``d_hidden`` and ``d_weight``. The GEMMs are the unfused path's, so
    the time is about the same, while the memory held for logits is one chunk instead of all.

    ``bf16=True`` (the bf16 precision policy) runs the three GEMMs as a bf16 linear layer does:
    ``hidden``, ``weight`` and each chunk's logit gradient rounded to bf16, the products summed
    in float32; the softmax, the loss and the bias gradient stay float32.
    """
    from .gemm import convert_bf16, gemm

    f32 = (_common.FLOAT32,)
    dev = _common.device(hidden=hidden, weight=weight, bias=bias)
    xp = dev.xp
    h = _common.array(hidden, "hidden", dev, f32, 2, contiguous=True)
    w = _common.array(weight, "weight", dev, f32, 2, contiguous=True)
    b, d = h.shape
    v = w.shape[0]
    if w.shape[1] != d:
        raise ValueError(f"weight must have shape (classes, {d}) to match hidden {h.shape}, got {w.shape}")
    if v < 1:
        raise ValueError(f"weight must have at least one class, got shape {w.shape}")
    if bias is not None:
        bias = _common.array(bias, "bias", dev, f32, 1, contiguous=True)
        if bias.shape != (v,):
            raise ValueError(f"bias must have shape ({v},) (one value per class), got {bias.shape}")
    t, cw, eps, ignore_index = _targets(dev, (b, v), target, class_weight, ignore_index, label_smoothing, reduction, h.dtype)
    try:
        wanted = set(gradients)
    except TypeError:
        wanted = None
    if wanted is None or isinstance(gradients, str) or not wanted <= {"hidden", "weight", "bias"}:
        raise ValueError(f"gradients must name some of 'hidden', 'weight' and 'bias', got {gradients!r}")
    chunk_bytes = _check.integer(chunk_bytes, "chunk_bytes")
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    denominator = _denominator(dev, t, cw, ignore_index) if reduction == "mean" else None
    scale = _row_scales(dev, grad_output, t, b, reduction, denominator, ignore_index, h.dtype)
    rows = max(1, min(b, chunk_bytes // (4 * v)))

    d_hidden = dev.empty((b, d), _common.FLOAT32) if "hidden" in wanted else None
    d_weight = xp.zeros((v, d), _common.FLOAT32) if "weight" in wanted else None
    d_bias = xp.zeros((v,), np.float64) if bias is not None and "bias" in wanted else None
    backward = d_hidden is not None or d_weight is not None or d_bias is not None
    row_loss = dev.empty((b,), np.float64)
    logits = dev.empty((rows, v), _common.FLOAT32)
    fwd, bwd = _common.native(dev, "cross_entropy_fwd"), _common.native(dev, "cross_entropy_bwd")
    if bf16:  # the GEMMs' operands, rounded once
        h, w = convert_bf16(h), convert_bf16(w)
    for r0 in range(0, b, rows):
        r1 = min(b, r0 + rows)
        z = logits[: r1 - r0]
        gemm(h[r0:r1], w, trans_b=True, bias=bias, out=z)
        tc = t[r0:r1]
        row_loss[r0:r1], lse = _row_losses(dev, fwd, z, tc, cw, eps, ignore_index)
        if not backward:
            continue
        bwd(z, tc, cw, eps, ignore_index, lse, scale[r0:r1], z, **dev.launch())  # in place
        dz = convert_bf16(z) if bf16 else z
        if d_hidden is not None:
            gemm(dz, w, out=d_hidden[r0:r1])
        if d_weight is not None:
            gemm(dz, h[r0:r1], trans_a=True, out=d_weight, beta=1.0)
        if d_bias is not None:
            d_bias += z.sum(axis=0, dtype=np.float64)
    loss = _reduce(dev, row_loss, reduction, denominator, _common.FLOAT32)
    return loss, d_hidden, d_weight, (d_bias.astype(_common.FLOAT32) if d_bias is not None else None)
