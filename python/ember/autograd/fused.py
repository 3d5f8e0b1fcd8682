"""The differentiable fused ops whose kernels keep less than their unfused forms would: scaled
dot-product attention (``ember.kernels.attention``: each query's log-sum-exp instead of its row
of probabilities, so neither direction stores the T x T scores), a linear layer's
cross-entropy (``linear_cross_entropy``: the gradients made chunk by chunk in the forward, so
the batch x classes logits never exist) and layer normalisation (``ember.kernels.layer_norm``:
one pass per row each way, keeping each row's mean and 1 / std)."""

from __future__ import annotations

from ..kernels import attention, cross_entropy, layer_norm
from .function import Function, owned


class ScaledDotProductAttentionFn(Function):
    """(batch, heads, length, head size) arrays; the mask (additive, float32, broadcast to
    (batch, heads, Tq, Tk)) takes no gradient."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, is_causal, dropout_p, seed):
        ctx.args = {"scale": scale, "is_causal": is_causal, "dropout_p": dropout_p, "seed": seed}
        out, lse = attention.attention_fwd(q, k, v, mask, **ctx.args)
        ctx.save_for_backward(q, k, v, out)  # the output too: a change to it in place is an error
        ctx.lse, ctx.mask = lse, owned(mask)  # the mask may be the caller's array
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, out = ctx.saved_tensors
        return attention.attention_bwd(q, k, v, out, g, ctx.lse, ctx.mask, **ctx.args)


class SelfAttentionFn(Function):
    """Self-attention of a stacked (batch, length, 3 x width) projection, the output (batch,
    length, width); the mask (additive, float32, broadcast to (batch, heads, T, T)) takes no
    gradient."""

    @staticmethod
    def forward(ctx, qkv, heads, mask, scale, is_causal, dropout_p, seed):
        ctx.args = {"scale": scale, "is_causal": is_causal, "dropout_p": dropout_p, "seed": seed}
        out, lse = attention.attention_qkv_fwd(qkv, heads, mask, **ctx.args)
        ctx.save_for_backward(qkv, out)
        ctx.heads, ctx.lse, ctx.mask = heads, lse, owned(mask)
        return out

    @staticmethod
    def backward(ctx, g):
        qkv, out = ctx.saved_tensors
        return attention.attention_qkv_bwd(qkv, ctx.heads, out, g, ctx.lse, ctx.mask, **ctx.args)


class LinearCrossEntropyFn(Function):
    """The cross-entropy of ``hidden @ weightᵀ + bias``: the forward computes the loss and, in the
    same pass over each chunk of logits, the gradients named in ``gradients`` (those the graph
    will ask for) for a unit upstream gradient; the backward scales them (the loss is linear in
    that gradient)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, ignore_index, label_smoothing, reduction, gradients, bf16=False):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"linear_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
        loss, ctx.dh, ctx.dw, ctx.db = cross_entropy.linear_cross_entropy(
            hidden, weight, target, bias, ignore_index=ignore_index, label_smoothing=label_smoothing,
            reduction=reduction, gradients=gradients, bf16=bf16)
        return loss

    @staticmethod
    def backward(ctx, g):
        return (*(None if d is None else d * g for d in (ctx.dh, ctx.dw, ctx.db)), None)


class LayerNormFn(Function):
    """Layer normalisation over the trailing ``normalized_shape`` dimensions; weight and bias may
    be None."""

    @staticmethod
    def forward(ctx, x, weight, bias, normalized_shape, eps):
        y, mean, rstd = layer_norm.layer_norm_fwd(x, normalized_shape, weight, bias, eps)
        ctx.save_for_backward(x, weight)
        ctx.mean, ctx.rstd, ctx.shape, ctx.has_bias = mean, rstd, normalized_shape, bias is not None
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        dx, dw, db = layer_norm.layer_norm_bwd(g, x, ctx.shape, weight, ctx.mean, ctx.rstd,
                                               weight_grad=weight is not None and bool(ctx.needs_input_grad[1]),
                                               bias_grad=ctx.has_bias and bool(ctx.needs_input_grad[2]))
        return dx, dw, db


class RMSNormFn(Function):
    """RMS normalisation over the trailing ``normalized_shape`` dimensions; weight may be None."""

    @staticmethod
    def forward(ctx, x, weight, normalized_shape, eps):
        y, rstd = layer_norm.rms_norm_fwd(x, normalized_shape, weight, eps)
        ctx.save_for_backward(x, weight)
        ctx.rstd, ctx.shape = rstd, normalized_shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return layer_norm.rms_norm_bwd(g, x, ctx.shape, weight, ctx.rstd,
                                       weight_grad=weight is not None and bool(ctx.needs_input_grad[1]))
