"""Functional forms of the layers and losses, PyTorch's ``torch.nn.functional`` names."""

from __future__ import annotations

from .. import backend, precision
from ..autograd import functions as fns
from ..tensor import Tensor, default_generator

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
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "relu",
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


def softmax(x: Tensor, dim: int) -> Tensor:
    return fns.SoftmaxFn.apply(x, dim=dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    return fns.LogSoftmaxFn.apply(x, dim=dim)


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


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Tensor:
    return fns.MaxPool2dFn.apply(input, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                             ceil_mode=ceil_mode)


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
    t = target._data if isinstance(target, Tensor) else target
    w = weight._data if isinstance(weight, Tensor) else weight
    return fns.CrossEntropyFn.apply(input, t, w, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                    reduction=reduction)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weightᵀ + bias`` on Ember's GEMM, the bias fused into its epilogue. Under the
    bf16 precision policy (``ember.autocast("bf16")``) float32 operands are multiplied in bf16,
    the products summed in float32 (see ``ember.precision``)."""
    if precision.current().low_precision_matmul and input.dtype == "float32" and weight.dtype == "float32":
        return fns.LinearBf16Fn.apply(input, weight, bias)
    return fns.LinearFn.apply(input, weight, bias)


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
    t = dev.asarray(target._data if isinstance(target, Tensor) else target)
    valid = t != ignore_index
    tt = xp.where(valid, t, 0)
    w = xp.ones(input.shape[1], input.dtype) if weight is None else dev.asarray(
        weight._data if isinstance(weight, Tensor) else weight, input.dtype)
    wt = (w[tt] * valid).astype(input.dtype)
    picked = input[xp.arange(input.shape[0]), tt] * Tensor(wt)
    if reduction == "mean":
        return -picked.sum() / float(wt.sum())
    return _reduce(-picked, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target, weight=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross-entropy in the stable form
    ``(1 - y) x + (1 + (pos_weight - 1) y) (log(1 + exp(-|x|)) + max(-x, 0))``."""
    y = target if isinstance(target, Tensor) else Tensor(backend.device_of(input._data).asarray(target, input.dtype))
    soft_plus = (1.0 + (-input.abs()).exp()).log() + (-input).relu()
    log_weight = 1.0 if pos_weight is None else (y * (pos_weight - 1.0) + 1.0)
    loss = (1.0 - y) * input + log_weight * soft_plus
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
