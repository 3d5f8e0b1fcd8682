"""The differentiable scaled dot-product attention: forward and backward on Ember's fused
kernels (``ember.kernels.attention``), which keep each query's log-sum-exp instead of its row of
probabilities, so neither direction stores the T x T scores."""

from __future__ import annotations

from ..kernels import attention
from .function import Function


class ScaledDotProductAttentionFn(Function):
    """(batch, heads, length, head size) arrays; the mask (additive, float32, broadcast to
    (batch, heads, Tq, Tk)) takes no gradient."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, is_causal, dropout_p, seed):
        ctx.args = {"scale": scale, "is_causal": is_causal, "dropout_p": dropout_p, "seed": seed}
        out, lse = attention.attention_fwd(q, k, v, mask, **ctx.args)
        ctx.save_for_backward(q, k, v)
        ctx.out, ctx.lse, ctx.mask = out, lse, mask
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v = ctx.saved_tensors
        return attention.attention_bwd(q, k, v, ctx.out, g, ctx.lse, ctx.mask, **ctx.args)
