"""Functional forms of the layers and losses, PyTorch's ``torch.nn.functional`` names."""

from __future__ import annotations

import math
import warnings

from .. import backend, precision
from ..autograd import is_grad_enabled
from ..autograd import nn_functions as fns
from ..autograd.function import owned
from ..autograd.fused import LinearCrossEntropyFn, ScaledDotProductAttentionFn, SelfAttentionFn
from ..kernels.attention import additive_mask, has_qkv_kernels
from ..kernels.cross_entropy import _targets as _ce_targets
from ..tensor import Tensor
from ..factories import default_generator

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cross_entropy",
    "dropout",
    "gelu",
    "l1_loss",
    "leaky_relu",
    "linear",
    "linear_cross_entropy",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
]


def relu(x: Tensor) -> Tensor:
    return fns.ReLUFn.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return fns.LeakyReLUFn.apply(x, slope=negative_slope)


def gelu(x: Tensor) -> Tensor:
    """x Φ(x), Φ the standard normal CDF (PyTorch's default, exact form)."""
    return fns.GELUFn.apply(x)


def silu(x: Tensor) -> Tensor:
    return fns.SiLUFn.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return fns.SigmoidFn.apply(x)


def tanh(x: Tensor) -> Tensor:
    return fns.TanhFn.apply(x)


def legacy_softmax_dim(ndim: int) -> int:
    """PyTorch's legacy choice of a softmax's dim when none is given: 0 for 0-, 1- and 3-D
    input, else 1 (what ``nn.Softmax()`` uses; ONNX export and the C API follow it too)."""
    return 0 if ndim in (0, 1, 3) else 1


def _implicit_dim(name: str, ndim: int) -> int:
    """``legacy_softmax_dim``, with PyTorch's deprecation warning."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an "
                  "argument.", UserWarning, stacklevel=3)
    return legacy_softmax_dim(ndim)


def softmax(x: Tensor, dim: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) over ``dim``; without one, PyTorch's legacy implicit dim (0 for 0-, 1-
    and 3-D input, else 1) and its UserWarning."""
    x = _tensor(x, "softmax")
    return x.softmax(_implicit_dim("softmax", x.ndim) if dim is None else dim)


def log_softmax(x: Tensor, dim: int | None = None) -> Tensor:
    """log(softmax(x, dim)), computed stably; ``dim`` as in ``softmax``."""
    x = _tensor(x, "log_softmax")
    return x.log_softmax(_implicit_dim("log_softmax", x.ndim) if dim is None else dim)


def _tensor(x, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: input must be an ember Tensor, got {type(x).__name__}")
    return x


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) when training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return fns.DropoutFn.apply(x, p=p, generator=(generator or default_generator()).numpy)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Tensor:
    """2-D convolution, NCHW input and OIHW weight, on Ember's convolution kernels. Under the bf16
    precision policy the forward's and the input gradient's products run in bf16 where that pays
    (``groups=1``, 64 or more products per output value; see ``ember.precision``)."""
    return fns.Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                              bf16=precision.current().low_precision_matmul)


class _MaxPool2dWithIndicesFn(fns.MaxPool2dFn):
    """Max pooling that also returns the positions of the maxima its backward uses."""

    @staticmethod
    def forward(ctx, x, **geometry):
        output = fns.MaxPool2dFn.forward(ctx, x, **geometry)
        (indices,) = ctx.saved_tensors  # an output too: changing it in place before backward is an error
        return output, indices

    @staticmethod
    def backward(ctx, g, _indices):
        return fns.MaxPool2dFn.backward(ctx, g)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling, PyTorch's signature. With ``return_indices``: (output, indices), the indices
    (int64, no gradient) the flat position ``h * W + w`` of each maximum in its input plane."""
    geometry = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    if not return_indices:
        return fns.MaxPool2dFn.apply(input, **geometry)
    output, indices = _MaxPool2dWithIndicesFn.apply(input, **geometry)
    return output, indices.detach()


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> Tensor:
    return fns.AvgPool2dFn.apply(input, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                             count_include_pad=count_include_pad)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    return fns.AdaptiveAvgPool2dFn.apply(input, output_size=output_size)


def cross_entropy(input: Tensor, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of (batch, classes) logits, on Ember's fused kernel: class indices or
    probability targets, per-class ``weight``, ``ignore_index``, ``label_smoothing``."""
    # Probability targets that require grad get theirs (PyTorch differentiates them too).
    t = target if isinstance(target, Tensor) and target.requires_grad else \
        target._data if isinstance(target, Tensor) else target
    # A weight tensor goes in as one (detached: it takes no gradient), so that backward's version
    # check sees an in-place change to it, as PyTorch's; an array is copied, as nothing would.
    w = weight.detach() if isinstance(weight, Tensor) else owned(weight)
    return fns.CrossEntropyFn.apply(input, t, w, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                    reduction=reduction)


def _check_dtype(what: str, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> None:
    """PyTorch's rule for a layer (``what``): it computes in its weights' dtype, and an input (or
    a bias) of another dtype is a TypeError naming both -- no silent cast -- which says how to
    convert the input."""
    want = weight.dtype
    if x.dtype != want:
        casts = {"float32": "x.float()", "float64": "x.double()"}
        how = ("x.float() / 255 (or ember.data.transforms.ToFloat) for 8-bit images" if x.dtype.kind in "ub"
               else casts.get(want.name, f"x.type({want.name!r})"))
        raise TypeError(f"{what}: input has dtype {x.dtype} but the weights are {want}; convert the input with {how}")
    if bias is not None and bias.dtype != want:
        raise TypeError(f"{what}: bias has dtype {bias.dtype} but the weights are {want}")


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weightᵀ + bias`` on Ember's GEMM, the bias fused into its epilogue. Under the
    bf16 precision policy (``ember.autocast("bf16")``) float32 operands are multiplied in bf16,
    the products summed in float32 (see ``ember.precision``)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"linear: {name} must be an ember Tensor, got {type(t).__name__}")
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: weight must be (out_features, in_features) with in_features the input's last "
                         f"dimension, got weight {weight.shape} for input {input.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    _check_dtype("linear", input, weight, bias)
    if precision.current().low_precision_matmul and input.dtype == "float32" and weight.dtype == "float32":
        return fns.LinearBf16Fn.apply(input, weight, bias)
    return fns.LinearFn.apply(input, weight, bias)


def linear_cross_entropy(input: Tensor, weight: Tensor, target, bias: Tensor | None = None, ignore_index: int = -100,
                         reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """``cross_entropy(linear(input, weight, bias), target)`` without ever holding the (batch,
    classes) logits: the fused kernel makes them chunk by chunk, each chunk's loss and gradients
    at once (see ``ember.kernels.cross_entropy.linear_cross_entropy``). ``input`` (batch,
    features) float32, ``weight`` (classes, features); ``reduction`` 'mean' or 'sum'. The head of
    a language model with a large vocabulary. Under the bf16 precision policy its products run
    in bf16 as ``linear``'s do; the softmax and the loss stay float32."""
    t = target._data if isinstance(target, Tensor) else target
    # Only the gradients backward will be asked for (none under no_grad: the loss alone).
    recording = is_grad_enabled()
    gradients = tuple(name for name, a in (("hidden", input), ("weight", weight), ("bias", bias))
                      if recording and isinstance(a, Tensor) and a.requires_grad)
    bf16 = bool(precision.current().low_precision_matmul) and all(
        a.dtype == "float32" for a in (input, weight) if isinstance(a, Tensor))
    return LinearCrossEntropyFn.apply(input, weight, bias, t, ignore_index=ignore_index,
                                      label_smoothing=label_smoothing, reduction=reduction, gradients=gradients,
                                      bf16=bf16)


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    return _reduce((input - target) ** 2, reduction)


def l1_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).abs(), reduction)


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be one of ('mean', 'sum', 'none'), got {reduction!r}")


def nll_loss(input: Tensor, target, weight=None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of (batch, classes) log-probabilities (PyTorch's weighting: 'mean'
    divides by the targets' total weight)."""
    dev = backend.device_of(input._data)
    xp = dev.xp
    if input.ndim != 2:
        raise ValueError(f"nll_loss: input must be (batch, classes) log-probabilities, got shape {input.shape}")
    t = dev.asarray(target._data if isinstance(target, Tensor) else target)
    if t.ndim != 1:
        raise ValueError(f"nll_loss: target must be class indices of shape ({input.shape[0]},), got shape {t.shape}")
    w = xp.ones(input.shape[1], input.dtype) if weight is None else dev.asarray(
        weight._data if isinstance(weight, Tensor) else weight, input.dtype)
    # the cross-entropy kernels' checks: classes in range or ignore_index, one weight per class
    t, w, _, ignore_index = _ce_targets(dev, input.shape, t, w, ignore_index, 0.0, reduction, input.dtype)
    valid = t != ignore_index
    tt = xp.where(valid, t, 0)
    wt = (w[tt] * valid).astype(input.dtype)
    picked = input[xp.arange(input.shape[0]), tt] * Tensor(wt)
    if reduction == "mean":
        total = float(wt.sum())
        if total == 0:  # every target ignored: the mean is NaN (0 / 0), but no input moved it
            return -picked.sum() * 0.0 + float("nan")
        return -picked.sum() / total
    return _reduce(-picked, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target, weight=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross-entropy in the stable form
    ``(1 - y) x + (1 + (pos_weight - 1) y) (log(1 + exp(-|x|)) + max(-x, 0))``."""
    y = target if isinstance(target, Tensor) else Tensor(backend.device_of(input._data).asarray(target, input.dtype))
    if y.shape != input.shape:  # never broadcast into a grid of every input against every target
        raise ValueError(f"binary_cross_entropy_with_logits: target has shape {y.shape} but input has "
                         f"{input.shape}; they must be the same")
    soft_plus = (1.0 + (-input.abs()).exp()).log() + (-input).relu()
    log_weight = 1.0 if pos_weight is None else (y * (pos_weight - 1.0) + 1.0)
    loss = (1.0 - y) * input + log_weight * soft_plus
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _self_attention(qkv: Tensor, heads: int, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False):
    """Self-attention straight from a stacked (N, T, 3E) query | key | value projection to the
    (N, T, E) output (the heads side by side), or None where no kernel takes it (another device
    or dtype): what scaled_dot_product_attention computes on the split, transposed parts, without
    making them. ``attn_mask``: additive, broadcastable to (N, heads, T, T)."""
    if not has_qkv_kernels(qkv._data):
        return None
    n, t, width = qkv.shape
    mask = None if attn_mask is None else additive_mask(attn_mask, (n, heads), t, t, qkv.dtype)
    seed = int(default_generator().numpy.integers(0, 2**63)) if dropout_p > 0 else 0
    return SelfAttentionFn.apply(qkv, heads, mask, scale=1.0 / math.sqrt(width // (3 * heads)),
                                 is_causal=bool(is_causal), dropout_p=float(dropout_p), seed=seed)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ keyᵀ * scale + attn_mask) @ value, PyTorch's signature and semantics, on
    Ember's fused attention kernels: the Tq x Tk scores are never stored, forward or backward.

    ``query`` (..., Tq, E), ``key`` (..., Tk, E), ``value`` (..., Tk, Ev), the same leading
    dimensions (the last of them the heads); with ``enable_gqa`` the query may have a multiple
    of the key's heads (grouped-query attention: query head h reads key head h // group).
    ``attn_mask``: boolean (True: the key takes part) or additive, broadcastable to (..., Tq,
    Tk); it takes no gradient. ``is_causal``: query i sees keys j <= i (the top-left triangle, as
    PyTorch); not with a mask. A query that sees no key gives 0. ``dropout_p``: the probability
    of zeroing each attention weight (drawn from Ember's seeded generator, the same entries in
    the backward); applied whenever it is above 0, as PyTorch's functional does. ``scale``:
    1/sqrt(E) by default. With E = 0 every score is 0: each query attends evenly to the keys it
    sees, as in PyTorch."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, features), got shape {t.shape}")
    if not (query.ndim == key.ndim == value.ndim):
        raise ValueError(f"query, key and value must have as many dimensions, got shapes {query.shape}, {key.shape} "
                         f"and {value.shape}")
    lead, klead = tuple(query.shape[:-2]), tuple(key.shape[:-2])
    tq, e, tk = query.shape[-2], query.shape[-1], key.shape[-2]
    if key.shape[-1] != e:
        raise ValueError(f"key has {key.shape[-1]} features per head but query has {e}")
    if tuple(value.shape[:-1]) != tuple(key.shape[:-1]):
        raise ValueError(f"value of shape {value.shape} must match key of shape {key.shape} but in the last dimension")
    grouped = enable_gqa and lead and klead and lead[:-1] == klead[:-1] and klead[-1] >= 1 and lead[-1] % klead[-1] == 0
    if lead != klead and not grouped:
        hint = "" if enable_gqa else " (enable_gqa=True lets the query have a multiple of the key's heads)"
        raise ValueError(f"query's leading dimensions {lead} must equal key's {klead}{hint}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if attn_mask is not None and is_causal:
        raise ValueError("attn_mask and is_causal cannot both be set")
    if scale is None:  # with no features the scores are 0 whatever the scale
        scale = 1.0 / math.sqrt(e) if e else 1.0
    scale = float(scale)
    batch, heads, kv_heads = math.prod(lead[:-1]), (lead[-1] if lead else 1), (klead[-1] if klead else 1)
    if isinstance(attn_mask, Tensor):
        if attn_mask.requires_grad:
            raise ValueError("attn_mask takes no gradient in scaled_dot_product_attention; pass it detached")
        attn_mask = attn_mask._data
    mask = None if attn_mask is None else additive_mask(attn_mask, lead, tq, tk, query.dtype)
    seed = int(default_generator().numpy.integers(0, 2**63)) if dropout_p > 0 else 0
    out = ScaledDotProductAttentionFn.apply(query.reshape(batch, heads, tq, e), key.reshape(batch, kv_heads, tk, e),
                                            value.reshape(batch, kv_heads, tk, value.shape[-1]), mask, scale=scale,
                                            is_causal=bool(is_causal), dropout_p=float(dropout_p), seed=seed)
    return out.reshape(*lead, tq, value.shape[-1])
