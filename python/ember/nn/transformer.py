"""Transformer layers with PyTorch's names, arguments, parameter names and defaults -- so that a
PyTorch ``state_dict`` loads into them unchanged -- over Ember's fused attention kernels."""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd.fused import RMSNormFn
from ..tensor import Tensor
from ..factories import empty, ones, zeros
from . import functional as F
from . import init
from .layers import Dropout, LayerNorm, Linear
from .module import Module, Parameter


class RMSNorm(Module):
    """``x / sqrt(mean(x², over normalized_shape) + eps) * weight``; ``eps=None`` is the dtype's
    machine epsilon (PyTorch's default)."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(ones(self.normalized_shape)) if elementwise_affine else None

    def forward(self, x):
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"RMSNorm{self.normalized_shape}: input of shape {x.shape} does not end in it")
        eps = float(np.finfo(x.dtype).eps) if self.eps is None else self.eps
        if (self.weight is None or self.weight.dtype == x.dtype) and \
                hasattr(backend.device_of(x._data).kernels, "rms_norm_fwd"):  # one pass per row each way
            return RMSNormFn.apply(x, self.weight, normalized_shape=self.normalized_shape, eps=eps)
        y = x / ((x * x).mean(dim=tuple(range(x.ndim - k, x.ndim)), keepdim=True) + eps).sqrt()
        return y * self.weight if self.weight is not None else y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


def _additive(mask, name, dtype):
    """A boolean mask (True: the position may NOT be attended, nn.MultiheadAttention's convention)
    or a float one (added to the scores), as an additive array of ``dtype``."""
    m = mask._data if isinstance(mask, Tensor) else mask
    xp = backend.namespace(m)
    if m.dtype == np.bool_:
        return xp.where(m, dtype.type(-np.inf), dtype.type(0))
    if m.dtype.kind != "f":
        raise TypeError(f"{name} must be boolean or floating point, got {m.dtype}")
    return m.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """PyTorch's ``nn.MultiheadAttention``: ``in_proj_weight`` / ``in_proj_bias`` (the query, key
    and value projections stacked) and ``out_proj``; inputs (L, N, E), or (N, L, E) with
    ``batch_first``, or unbatched (L, E). ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or
    (N * num_heads, L, S): boolean True hides a position, a float mask is added.
    ``is_causal=True`` without ``attn_mask`` applies the causal triangle (with a padding mask too);
    with one, as in PyTorch, it only says that ``attn_mask`` is causal.

    With ``need_weights=False`` the attention runs on the fused kernels (the L x S weights are
    never built); with ``need_weights=True`` (PyTorch's default) they are computed and returned,
    averaged over the heads when ``average_attn_weights``.

    The arguments are PyTorch's, in its order; what Ember does not implement -- ``add_bias_kv``,
    ``add_zero_attn``, a ``kdim`` or ``vdim`` other than ``embed_dim``, ``device``, ``dtype`` --
    is a NotImplementedError when set to anything but its default (a module is made on the
    default device in float32; ``.to(device)`` moves it)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        unsupported = [f"{name}={value!r}" for name, value, defaults in (
            ("add_bias_kv", add_bias_kv, (False,)), ("add_zero_attn", add_zero_attn, (False,)),
            ("kdim", kdim, (None, embed_dim)), ("vdim", vdim, (None, embed_dim)), ("device", device, (None,)),
            ("dtype", dtype, (None,))) if value not in defaults]
        if unsupported:
            raise NotImplementedError(f"MultiheadAttention: {', '.join(unsupported)} is not supported (keys and "
                                      "values of embed_dim features, no extra key/value rows, made on the default "
                                      "device in float32)")
        if embed_dim < 1 or num_heads < 1:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = Parameter(zeros(3 * embed_dim)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def in_projection(self, x):
        """The stacked query | key | value projections of ``x`` (..., 3 * embed_dim)."""
        quantized = self._modules.get("in_proj")
        if quantized is not None:
            return quantized(x)
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def _project(self, x, part):
        e = self.embed_dim
        if "in_proj" in self._modules:  # quantized: one stacked product, then this part of it
            return self.in_projection(x)[..., part * e:(part + 1) * e]
        w = self.in_proj_weight[part * e:(part + 1) * e]
        b = None if self.in_proj_bias is None else self.in_proj_bias[part * e:(part + 1) * e]
        return F.linear(x, w, b)

    def quantize_projections(self, make) -> int:
        """For ``ember.quant``: the stacked input projection becomes ``make(weight, bias)`` (a
        quantized linear, the child ``in_proj``) and the float ``in_proj_weight`` and
        ``in_proj_bias`` go. Returns 1 (0 when it is quantized already)."""
        if "in_proj" in self._modules:
            return 0
        self.in_proj = make(self.in_proj_weight, self.in_proj_bias)
        self._children_restored()
        return 1

    def _children_restored(self) -> None:
        """A checkpoint's quantized ``in_proj`` replaces the float projection the constructor made."""
        if "in_proj" in self._modules:
            self.in_proj_weight = None
            self.in_proj_bias = None

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        self_attention = query is key and key is value  # one product makes the three projections
        unbatched = query.ndim == 2
        batch_dim = 0 if self.batch_first else 1
        if unbatched:
            query, key, value = (t.unsqueeze(batch_dim) for t in (query, key, value))
            if key_padding_mask is not None:
                m = key_padding_mask._data if isinstance(key_padding_mask, Tensor) else key_padding_mask
                key_padding_mask = m[None]
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"MultiheadAttention: query, key and value must be 3-D (or all 2-D, unbatched), got "
                             f"shapes {query.shape}, {key.shape}, {value.shape}")
        if not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, tq, e = query.shape
        tk = key.shape[1]
        if e != self.embed_dim or key.shape[2] != e or value.shape[2] != e:
            raise ValueError(f"MultiheadAttention({self.embed_dim}, {self.num_heads}): inputs must have "
                             f"{self.embed_dim} features, got shapes {query.shape}, {key.shape}, {value.shape}")
        if key.shape[0] != n or value.shape[:2] != key.shape[:2]:
            raise ValueError(f"MultiheadAttention: key and value must have the query's batch and one length, got "
                             f"shapes {query.shape}, {key.shape}, {value.shape}")
        h, d = self.num_heads, self.head_dim
        qkv = self.in_projection(query) if self_attention else None
        mask = self._mask(key_padding_mask, attn_mask, n, tq, tk, query.dtype)
        causal = is_causal and attn_mask is None  # with an attn_mask, is_causal is PyTorch's hint that it is causal
        if causal and mask is not None:  # a padding mask only: the causal triangle joins it
            triangle = np.where(np.tril(np.ones((tq, tk), bool)), 0.0, -np.inf).astype(mask.dtype)
            mask, causal = mask + backend.device_of(mask).from_host(triangle), False
        p = self.dropout if self.training else 0.0
        out = None if need_weights or qkv is None else F._self_attention(qkv, h, mask, p, causal)
        weights = None
        if out is None:  # the heads split from the projections and transposed
            q, k, v = (qkv.chunk(3, dim=-1) if qkv is not None else
                       (self._project(query, 0), self._project(key, 1), self._project(value, 2)))
            q, k, v = (t.reshape(n, -1, h, d).permute(0, 2, 1, 3) for t in (q, k, v))
            if need_weights:
                out, weights = self._weighted(q, k, v, mask, causal, p)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
            out = out.permute(0, 2, 1, 3).reshape(n, tq, e)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if unbatched:
            out = out.squeeze(batch_dim)
            weights = None if weights is None else weights.squeeze(0)
        return out, weights

    def _mask(self, key_padding_mask, attn_mask, n, tq, tk, dtype):
        """One additive mask broadcastable to (N, heads, L, S), or None."""
        mask = None
        if attn_mask is not None:
            m = _additive(attn_mask, "attn_mask", dtype)
            if m.shape == (tq, tk):
                mask = m
            elif m.shape == (n * self.num_heads, tq, tk):
                mask = m.reshape(n, self.num_heads, tq, tk)
            else:
                raise ValueError(f"attn_mask must have shape {(tq, tk)} or {(n * self.num_heads, tq, tk)}, got "
                                 f"{tuple(m.shape)}")
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, "key_padding_mask", dtype)
            if m.shape != (n, tk):
                raise ValueError(f"key_padding_mask must have shape {(n, tk)}, got {tuple(m.shape)}")
            m = m.reshape(n, 1, 1, tk)
            mask = m if mask is None else mask + m
        return mask

    def _weighted(self, q, k, v, mask, causal, p):
        """The output and the (N, heads, L, S) attention weights, computed in full."""
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if causal:
            tq, tk = scores.shape[-2:]
            mask = np.where(np.tril(np.ones((tq, tk), bool)), 0.0, -np.inf).astype(scores.dtype.name)
        if mask is not None:
            mask = backend.device_of(q._data).from_host(mask) if isinstance(mask, np.ndarray) else mask
            scores = scores + Tensor._wrap(mask)
        weights = scores.softmax(dim=-1)
        if p > 0:
            weights = F.dropout(weights, p)
        return weights @ v, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """PyTorch's ``nn.TransformerEncoderLayer``: self-attention (``self_attn``), then the feed-forward
    ``linear1`` -> activation -> ``dropout`` -> ``linear2``, each with its residual and LayerNorm
    (``norm1``, ``norm2``; before each block with ``norm_first``, after otherwise) and dropout
    (``dropout1``, ``dropout2``). The attention runs on the fused kernels; ``src_mask`` and
    ``src_key_padding_mask`` follow nn.MultiheadAttention's conventions, ``is_causal=True`` without
    a mask is the causal triangle."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation, self.norm_first = activation, norm_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def _attend(self, x, mask, padding, is_causal):
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=padding, attn_mask=mask, need_weights=False,
                                            is_causal=is_causal)[0])

    def _feed_forward(self, x, dropout: bool = True):
        """linear1 -> activation -> dropout -> linear2 -> dropout2; without the dropouts when
        ``dropout`` is False (inference, whatever the dropouts' modes)."""
        h = _ACTIVATIONS[self.activation](self.linear1(x))
        if not dropout:
            return self.linear2(h)
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._attend(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._attend(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._feed_forward(x))
