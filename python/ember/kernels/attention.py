"""Scaled dot-product attention on Ember's fused kernels: (batch, heads, length, head size)
arrays, C-contiguous float32 on the fast kernels, float32 or float64 on the references (which
gradient checks use). The forward returns the output and each query's log-sum-exp, which is
all the backward needs besides the inputs and the output: the T x T scores are never stored.

Self-attention also runs straight from the stacked projection (``attention_qkv_fwd``): query,
key and value read in place from one (batch, length, 3 x width) array, the output written as
(batch, length, width) and the gradients as one array shaped like the projection -- so the
projections before and after the attention neither split, transpose nor join anything.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _check, backend
from . import _common


def additive_mask(attn_mask, lead, tq: int, tk: int, dtype):
    """An attention mask as the kernels take it: additive float32, broadcast to ``lead + (tq,
    tk)`` and folded to (batch, heads, tq, tk). A boolean mask (True: the key takes part) becomes
    0 / -inf on its own shape first, so that broadcasting copies nothing."""
    m = attn_mask if backend.is_array(attn_mask) else np.asarray(attn_mask)
    xp = backend.namespace(m)
    if m.dtype == np.bool_:
        m = xp.where(m, np.float32(0), np.float32(-np.inf))
    elif m.dtype.kind != "f" or m.dtype not in (np.dtype(dtype), np.float32):
        raise TypeError(f"attn_mask must be boolean or have the query's dtype {dtype}, got {m.dtype}")
    full = tuple(lead) + (tq, tk)
    try:
        m = xp.broadcast_to(m.astype(np.float32, copy=False), full)
    except ValueError:
        raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to {full} (the query's "
                         "leading dimensions, its length and the key's)") from None
    return m.reshape(math.prod(lead[:-1]), lead[-1] if lead else 1, tq, tk)


def _operands(query, key, value, attn_mask, fn):
    dev = _common.device(query=query, key=key, value=value, attn_mask=attn_mask)
    q = _common.array(query, "query", dev, ndim=4, contiguous=True, layout=" (batch, heads, length, head size)")
    k = _common.array(key, "key", dev, ndim=4, contiguous=True, layout=" (batch, heads, length, head size)")
    v = _common.array(value, "value", dev, ndim=4, contiguous=True, layout=" (batch, heads, length, head size)")
    for name, a in (("key", k), ("value", v)):
        if a.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but query has dtype {q.dtype}")
    if not hasattr(dev.kernels, fn):
        raise NotImplementedError(f"scaled_dot_product_attention has no kernel on device '{dev.name}' yet")
    return dev, q, k, v


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return int(seed)


def attention_fwd(query, key, value, attn_mask=None, *, scale: float, is_causal: bool = False,
                  dropout_p: float = 0.0, seed: int = 0):
    """(out, lse): out (B, H, Tq, Dv) = softmax(scale q kᵀ + attn_mask, causal) v with dropout,
    lse (B, H, Tq) each row's log-sum-exp (-inf, and out 0, for a query that sees no key).
    ``attn_mask``: None or an additive float32 array of shape (B, H, Tq, Tk) (broadcast views
    welcome: zero strides are read in place)."""
    dev, q, k, v = _operands(query, key, value, attn_mask, "attention_fwd")
    out = dev.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    lse = dev.empty(q.shape[:3], q.dtype)
    fn = dev.kernels.attention_fwd if q.dtype == np.float32 else dev.kernels.attention_fwd_ref
    fn(q, k, v, attn_mask, out, lse, scale, bool(is_causal), dropout_p, _seed(seed), **dev.launch())
    return out, lse


def attention_bwd(query, key, value, out, grad_out, lse, attn_mask=None, *, scale: float, is_causal: bool = False,
                  dropout_p: float = 0.0, seed: int = 0):
    """(dq, dk, dv), the gradients of :func:`attention_fwd` for ``grad_out``, from its inputs and
    the ``out`` and ``lse`` it returned (the same mask, scale, causality, dropout and seed)."""
    dev, q, k, v = _operands(query, key, value, attn_mask, "attention_bwd")
    g = _common.array(grad_out, "grad_out", dev, dtypes=(q.dtype,), ndim=4, contiguous=True)
    dq, dk, dv = (dev.empty(a.shape, q.dtype) for a in (q, k, v))
    if q.dtype == np.float32:
        dev.kernels.attention_bwd(q, k, v, out, g, lse, attn_mask, dq, dk, dv, scale, bool(is_causal), dropout_p,
                                  _seed(seed), **dev.launch())
    else:
        dev.kernels.attention_bwd_ref(q, k, v, g, attn_mask, dq, dk, dv, scale, bool(is_causal), dropout_p,
                                      _seed(seed), **dev.launch())
    return dq, dk, dv


def has_qkv_kernels(qkv) -> bool:
    """Whether ``attention_qkv_fwd`` runs on this array's device and dtype (float32 on the CPU)."""
    return qkv.dtype == np.float32 and hasattr(backend.device_of(qkv).kernels, "attention_qkv_fwd")


def attention_qkv_fwd(qkv, heads: int, attn_mask=None, *, scale: float, is_causal: bool = False,
                      dropout_p: float = 0.0, seed: int = 0):
    """(out, lse): self-attention of the stacked projection ``qkv`` (N, T, 3E) -- query | key |
    value, each ``heads`` heads of E / heads -- as :func:`attention_fwd` computes it; out (N, T,
    E) holds the heads side by side, lse (N, heads, T). ``attn_mask``: None or additive float32
    broadcast to (N, heads, T, T)."""
    dev = _common.device(qkv=qkv, attn_mask=attn_mask)
    x = _common.array(qkv, "qkv", dev, dtypes=(_common.FLOAT32,), ndim=3, contiguous=True,
                      layout=" (batch, length, 3 x width)")
    n, t, width = x.shape
    heads = _check.integer(heads, "attention_qkv_fwd: heads", lo=1)
    out = dev.empty((n, t, width // 3), x.dtype)
    lse = dev.empty((n, heads, t), x.dtype)
    dev.kernels.attention_qkv_fwd(x, heads, attn_mask, out, lse, scale, bool(is_causal), dropout_p, _seed(seed),
                                  **dev.launch())
    return out, lse


def attention_qkv_bwd(qkv, heads: int, out, grad_out, lse, attn_mask=None, *, scale: float, is_causal: bool = False,
                      dropout_p: float = 0.0, seed: int = 0):
    """The gradient of :func:`attention_qkv_fwd` for ``grad_out`` (N, T, E): one (N, T, 3E)
    array, query | key | value as ``qkv`` holds them."""
    dev = _common.device(qkv=qkv, grad_out=grad_out, attn_mask=attn_mask)
    qkv = _common.array(qkv, "qkv", dev, dtypes=(_common.FLOAT32,), ndim=3, contiguous=True,
                        layout=" (batch, length, 3 x width)")
    heads = _check.integer(heads, "attention_qkv_bwd: heads", lo=1)
    g = _common.array(grad_out, "grad_out", dev, dtypes=(_common.FLOAT32,), ndim=3, contiguous=True)
    dqkv = dev.empty(qkv.shape, qkv.dtype)
    dev.kernels.attention_qkv_bwd(qkv, heads, out, g, lse, attn_mask, dqkv, scale, bool(is_causal), dropout_p,
                                  _seed(seed), **dev.launch())
    return dqkv
