"""A small GPT (a decoder-only Transformer language model) on Ember's fused kernels, and a
character tokenizer for it.

``GPT`` is token and learned position embeddings, pre-norm causal Transformer blocks
(``nn.TransformerEncoderLayer`` with GELU, PyTorch's parameter names), a final LayerNorm and an
output head tied to the token embedding. ``forward`` gives logits; ``compute_loss`` -- what
``fit`` uses when the model is compiled with ``loss="model"`` -- sends the hidden states
through the fused linear + cross-entropy kernel, so the (tokens x vocabulary) logits never
exist in training. ``generate`` samples with a key/value cache: each new token costs one
position's work per layer, not the whole context's -- on the CPU in one native call per token
(``GPT.decoder``), float32 or quantized by ``ember.quant``.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend, nn
from .autograd.engine import no_grad
from .nn import functional as F
from .tensor import Tensor, cat
from .factories import default_generator


class CharTokenizer:
    """Characters to token ids and back: the id of a character is its rank among ``chars``."""

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: chars must be a non-empty string of distinct characters")
        self.chars = "".join(sorted(chars))
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer of every character ``text`` uses."""
        return cls("".join(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of ``text``'s characters; a character outside the vocabulary is a ValueError."""
        try:
            return np.fromiter((self._ids[c] for c in text), np.int64, len(text))
        except KeyError as e:
            raise ValueError(f"CharTokenizer: {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"CharTokenizer: ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"CharTokenizer: ids must be in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids.reshape(-1))


class GPT(nn.Module):
    """A decoder-only Transformer over ``vocab_size`` tokens and contexts of up to ``block_size``:
    ``n_layer`` pre-norm causal blocks of ``n_head`` heads and width ``d_model`` (feed-forward 4
    times as wide, GELU), dropout ``dropout``. Weights start as GPT-2's: normal(0, 0.02), the
    residual projections scaled by 1/sqrt(2 n_layer), biases zero."""

    def __init__(self, vocab_size: int, block_size: int = 256, n_layer: int = 6, n_head: int = 6, d_model: int = 384,
                 dropout: float = 0.0):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer),
                        ("n_head", n_head), ("d_model", d_model)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GPT: {name} must be a positive int, got {v!r}")
        self.vocab_size, self.block_size, self.d_model = vocab_size, block_size, d_model
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([nn.TransformerEncoderLayer(d_model, n_head, 4 * d_model, dropout=dropout,
                                                                activation="gelu", batch_first=True, norm_first=True)
                                     for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("out_proj.weight", "linear2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def _ids(self, idx):
        a = idx._data if isinstance(idx, Tensor) else idx
        a = a if backend.is_array(a) else np.asarray(a)
        if a.dtype.kind not in "iu" or a.ndim != 2:
            raise ValueError(f"GPT: tokens must be integer ids of shape (batch, length), got {a.dtype} of shape "
                             f"{tuple(a.shape)}")
        if not 1 <= a.shape[1] <= self.block_size:
            raise ValueError(f"GPT: sequences must hold 1 to block_size={self.block_size} tokens, got {a.shape[1]}")
        return a

    def hidden(self, idx, start: int = 0) -> Tensor:
        """The final LayerNorm's output (batch, length, d_model) for token ids (batch, length)."""
        a = self._ids(idx)
        positions = backend.device_of(self.wpe.weight._data).xp.arange(start, start + a.shape[1])
        x = self.drop(self.wte(a) + self.wpe(positions))
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.ln_f(x)

    def _logits(self, h) -> Tensor:
        head = self._modules.get("head")  # a quantized copy of the tied head, once quantized
        return head(h) if head is not None else F.linear(h, self.wte.weight)

    def forward(self, idx) -> Tensor:
        """Logits (batch, length, vocab_size) of the next token at every position."""
        return self._logits(self.hidden(idx))

    def compute_loss(self, idx, targets) -> Tensor:
        """The mean cross-entropy of predicting ``targets`` from ``idx``, through the fused linear
        + cross-entropy head (the logits are never held); a quantized model's head makes the
        logits, then the cross-entropy. ``targets``: token ids (a Tensor, an array or nested
        lists) of exactly ``idx``'s shape (batch, length), the token to follow each position."""
        a = self._ids(idx)
        t = targets._data if isinstance(targets, Tensor) else targets
        t = t if backend.is_array(t) else np.asarray(t)
        if tuple(t.shape) != tuple(a.shape):
            raise ValueError(f"GPT.compute_loss: targets must have the shape of idx {tuple(a.shape)}, got "
                             f"{tuple(t.shape)}")
        h = self.hidden(a).reshape(-1, self.d_model)
        if "head" in self._modules:
            return F.cross_entropy(self._logits(h), t.reshape(-1))
        return F.linear_cross_entropy(h, self.wte.weight, t.reshape(-1))

    def quantize_projections(self, make) -> int:
        """For ``ember.quant``: the output head (tied to ``wte``, which the embedding keeps
        using in float32) becomes ``make(wte.weight, None)``, the child ``head``. Returns 1."""
        if "head" in self._modules:
            return 0
        self.head = make(self.wte.weight, None)
        return 1

    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator=None) -> np.ndarray:
        """``idx`` (batch, length) or (length,) token ids continued by ``max_new_tokens`` sampled
        ones: each from the softmax of the last logits / ``temperature`` (0: the most likely
        token), among the ``top_k`` most likely when given, drawn by ``generator`` (default:
        Ember's seeded one). Keys and values are cached per layer, so each new token runs one
        position through the model; when the context reaches ``block_size`` the cache is
        rebuilt from the last half of it. Returns host int64 ids, the prompt included.

        It computes as in evaluation mode (no dropout) without changing the model's modes, so
        it may run while other threads generate from, or train, the same model."""
        ids = np.asarray(idx._data if isinstance(idx, Tensor) else idx)
        one = ids.ndim == 1
        ids = ids[None] if one else ids
        self._ids(ids[:, -self.block_size:])
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"generate: top_k must be a positive int or None, got {top_k!r}")
        rng = (generator or default_generator()).numpy
        steps = _NativeSteps(self, len(ids)) if self._native() else _Steps(self)
        out = [ids.astype(np.int64)]
        logits = steps.start(out[0][:, -self.block_size:])
        for i in range(max_new_tokens):
            out.append(_sample(logits, temperature, top_k, rng)[:, None])
            if i + 1 == max_new_tokens:
                break
            if steps.full:  # no position left: start again from the last half
                logits = steps.start(np.concatenate(out, axis=1)[:, -max(1, self.block_size // 2):])
            else:
                logits = steps.next(out[-1])
        result = np.concatenate(out, axis=1)
        return result[0] if one else result

    def _native(self) -> bool:
        """Whether ``_C.Decoder`` can run this model: every parameter and buffer a host array of
        float32 (or a quantized layer's integers)."""
        return all(isinstance(t._data, np.ndarray) and (t._data.dtype == np.float32 or t._data.dtype.kind in "iu")
                   for t in (*self.parameters(), *self.buffers()))

    def decoder(self, batch: int = 1):
        """A native decoder (``ember._C.Decoder``) over this model's weights as they are -- float32
        or quantized by ``ember.quant`` -- for ``batch`` sequences: ``step(tokens)`` takes one
        int64 token per sequence and returns the next token's logits, each step one call that
        reads every weight once. ``generate`` uses it on the CPU."""
        if not self._native():
            raise ValueError("GPT.decoder: the model's weights must be float32 (or quantized) host arrays")
        blocks = [(_norm(b.norm1), _matrix(b.self_attn._modules.get("in_proj"), b.self_attn.in_proj_weight,
                                           b.self_attn.in_proj_bias),
                   _matrix(b.self_attn.out_proj), _norm(b.norm2), _matrix(b.linear1), _matrix(b.linear2))
                  for b in self.blocks]
        return backend.CPU.kernels.Decoder(batch, self.block_size, self.blocks[0].self_attn.num_heads,
                                           _host(self.wte.weight), _host(self.wpe.weight), blocks, _norm(self.ln_f),
                                           _matrix(self._modules.get("head"), self.wte.weight),
                                           self.blocks[0].activation)


class _Steps:
    """Generation through the model's modules (any device and dtype): ``start(ids)`` runs a
    context into a fresh cache, ``next(ids)`` one more position; both give the last logits. No
    step applies dropout, whatever the modules' modes."""

    def __init__(self, model):
        self.model, self.cache = model, None

    @property
    def full(self) -> bool:
        return self.cache[0][0].shape[2] >= self.model.block_size

    def start(self, ids):
        return self._run(ids, 0, [None] * len(self.model.blocks))

    def next(self, ids):
        return self._run(ids, self.cache[0][0].shape[2], self.cache)

    def _attend(self, block, x, cache):
        """One pre-norm block on new positions ``x`` (batch, t, d) given the block's cached keys
        and values (batch, heads, length, head size), or None; returns x and the grown cache."""
        a = block.self_attn
        n, t, _ = x.shape
        q, k, v = (z.reshape(n, t, a.num_heads, a.head_dim).permute(0, 2, 1, 3)
                   for z in a.in_projection(block.norm1(x)).chunk(3, dim=-1))
        if cache is not None:
            k, v = cat([cache[0], k], dim=2), cat([cache[1], v], dim=2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None and t > 1)
        x = x + a.out_proj(o.permute(0, 2, 1, 3).reshape(n, t, self.model.d_model))
        return x + block._feed_forward(block.norm2(x), dropout=False), (k, v)

    def _run(self, ids, start, caches):
        m = self.model
        x = m.wte(ids) + m.wpe(np.arange(start, start + ids.shape[1]))
        grown = []
        for block, cache in zip(m.blocks, caches):
            x, c = self._attend(block, x, cache)
            grown.append(c)
        self.cache = grown
        logits = m._logits(m.ln_f(x[:, -1:]))._data[:, 0]
        return backend.device_of(logits).to_host(logits)


class _NativeSteps:
    """Generation on ``_C.Decoder``: the same steps, one native call per position."""

    def __init__(self, model, batch):
        self.decoder, self.block_size = model.decoder(batch), model.block_size

    @property
    def full(self) -> bool:
        return self.decoder.position >= self.block_size

    def start(self, ids):
        self.decoder.reset()
        for j in range(ids.shape[1]):
            logits = self.decoder.step(np.ascontiguousarray(ids[:, j]))
        return logits

    def next(self, ids):
        return self.decoder.step(np.ascontiguousarray(ids[:, 0]))


def _host(t):
    return None if t is None else np.ascontiguousarray(t._data)


def _norm(ln):
    return _host(ln.weight), _host(ln.bias), float(ln.eps)


def _matrix(module, weight=None, bias=None):
    """A matrix product as ``_C.Decoder`` takes it: a QuantLinear's packed weight, an nn.Linear's
    float one, or ``weight`` and ``bias`` when ``module`` is None."""
    from .quant import QuantLinear

    if isinstance(module, QuantLinear):
        q = module.qweight
        # group_size 0: int8 per channel, or with bits 4 the int4 codebook format
        return (q.bits, q.shape[0], q.shape[1], q.group_size or 0, q.data, q.scales, q.colsum, _host(module.bias))
    if module is not None:
        weight, bias = module.weight, module.bias
    return _host(weight), _host(bias)


def _sample(logits, temperature, top_k, rng) -> np.ndarray:
    """One token per row of ``logits`` (batch, vocab)."""
    if temperature == 0:
        return logits.argmax(axis=1)
    # Shifted first so that the largest is 0: a tiny temperature sends the others to -inf, not inf - inf.
    with np.errstate(over="ignore"):
        z = (logits - logits.max(axis=1, keepdims=True)).astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((len(p), 1))
    return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)


nn.register(GPT, name="models.GPT")

__all__ = ["CharTokenizer", "GPT"]
