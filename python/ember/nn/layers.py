"""Layers, PyTorch's names, arguments and default initialisations."""

from __future__ import annotations

import math
from collections import OrderedDict

from .. import _check, backend
from ..autograd.fused import LayerNormFn
from ..kernels._geometry import pair
from ..tensor import Tensor
from ..factories import empty, ones, tensor, zeros
from . import functional as F
from . import init
from .module import Module, Parameter


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """``y = x @ weightᵀ + bias`` on Ember's GEMM (the bias fused into its epilogue)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _check.integer(in_features, "Linear: in_features", 0)
        self.out_features = _check.integer(out_features, "Linear: out_features", 0)
        self.weight = Parameter(empty(out_features, in_features))
        self.bias = Parameter(empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): input has "
                             f"{x.shape[-1] if x.ndim else 'no'} features (shape {x.shape})")
        F._check_dtype("Linear", x, self.weight)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (NCHW, OIHW weights) on Ember's convolution kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        in_channels = _check.integer(in_channels, "Conv2d: in_channels", 0)
        out_channels = _check.integer(out_channels, "Conv2d: out_channels", 0)
        groups = _check.integer(groups, "Conv2d: groups", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels ({in_channels}) and out_channels "
                             f"({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size", 1)
        self.stride, self.dilation = pair(stride, "Conv2d: stride", 1), pair(dilation, "Conv2d: dilation", 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be 'same', 'valid' or ints, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions (stride "
                                 f"{self.stride})")
            self.padding = padding
        else:
            self.padding = pair(padding, "Conv2d: padding", 0)
        self.groups = groups
        self.weight = Parameter(empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = Parameter(empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        F._check_dtype("Conv2d", x, self.weight)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


def _pool_window(cls: str, kernel_size, stride, padding) -> tuple:
    """A pooling layer's kernel_size, stride (the kernel's by default) and padding as pairs of
    ints, checked (PyTorch's arguments: an int or a pair each)."""
    kernel = pair(kernel_size, f"{cls}: kernel_size", 1)
    return kernel, kernel if stride is None else pair(stride, f"{cls}: stride", 1), pair(padding, f"{cls}: padding", 0)


def _short(p) -> str:
    """A pair as PyTorch's repr shows an int given for both sides."""
    return str(p[0]) if p[0] == p[1] else str(p)


class MaxPool2d(Module):
    """2-D max pooling, PyTorch's arguments in its order (kernel_size, stride, padding, dilation:
    an int or a pair each). ``return_indices``: the forward returns (output, indices), the
    indices the int64 flat position ``h * W + w`` of each maximum in its input plane."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_window("MaxPool2d", kernel_size, stride, padding)
        self.dilation = pair(dilation, "MaxPool2d: dilation", 1)
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={_short(self.kernel_size)}, stride={_short(self.stride)}, "
                f"padding={_short(self.padding)}, dilation={_short(self.dilation)}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-D average pooling, PyTorch's arguments (kernel_size, stride, padding: an int or a pair
    each)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_window("AvgPool2d", kernel_size, stride, padding)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={_short(self.kernel_size)}, stride={_short(self.stride)}, padding={_short(self.padding)}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _activation(name, fn, doc):
    def forward(self, x):
        return fn(x)

    return type(name, (Module,), {"forward": forward, "__doc__": doc})


ReLU = _activation("ReLU", F.relu, "max(x, 0); NaN propagates.")
GELU = _activation("GELU", F.gelu, "x Φ(x), Φ the standard normal CDF.")
SiLU = _activation("SiLU", F.silu, "x σ(x).")
Sigmoid = _activation("Sigmoid", F.sigmoid, "1 / (1 + exp(-x)).")
Tanh = _activation("Tanh", F.tanh, "tanh(x).")


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class Softmax(Module):
    """Softmax over ``dim``; without one, PyTorch's legacy implicit choice (see F.softmax)."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Sequential(Module):
    """Modules applied in order; ``Sequential(a, b)`` or ``Sequential(OrderedDict(name=module))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: {name!r} is a {type(m).__name__}, not a Module")
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                setattr(self, str(i), m)

    def get_config(self) -> dict:
        # Sequential's own arguments are its children, which a description records as such.
        return {} if type(self) is Sequential else super().get_config()

    @classmethod
    def from_children(cls, config, children):
        """A Sequential of ``children`` (name -> module, in order) for ``rebuild``."""
        return cls(OrderedDict(children))

    # The inference path (ember.nn.inference.forward, which nn's __init__ installs here: that
    # module reads these classes, so this one does not import it). NotImplemented: not applicable.
    inference_forward = staticmethod(lambda seq, x: NotImplemented)

    def forward(self, x):
        y = self.inference_forward(self, x)  # in eval mode without autograd: the kernels directly
        if y is not NotImplemented:
            return y
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        """The i-th module, or a Sequential of a slice of them (sharing the modules, keeping
        their names), as in PyTorch."""
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def get_config(self) -> dict:
        return {} if type(self) is ModuleList else super().get_config()

    @classmethod
    def from_children(cls, config, children):
        """A ModuleList of ``children`` (in order) for ``rebuild``."""
        return cls(children.values())

    def append(self, m: Module):
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(m).__name__}")
        setattr(self, str(len(self._modules)), m)
        return self

    def __getitem__(self, i):
        """The i-th module, or a ModuleList of a slice of them."""
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _register_weights(loss, **weights) -> None:
    """A loss's weights as PyTorch's losses hold them: buffers (in the state_dict, moved by
    ``to``), None when not given (and then not in the state_dict); array-likes become tensors,
    floating point."""
    for name, w in weights.items():
        if w is not None and not isinstance(w, Tensor):
            w = tensor(w)
            w = w if w.dtype.kind == "f" else w.float()
        loss.register_buffer(name, w)


class CrossEntropyLoss(Module):
    """Softmax cross-entropy on Ember's fused kernel (PyTorch's arguments; ``weight`` a buffer)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        _register_weights(self, weight=weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class _BatchNorm(Module):
    """Normalises each channel by its batch statistics while training (keeping running
    estimates, PyTorch's momentum convention), by the running estimates in eval mode."""

    _dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(ones(num_features)) if affine else None
        self.bias = Parameter(zeros(num_features)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features))
            self.register_buffer("running_var", ones(num_features))
            self.register_buffer("num_batches_tracked", zeros((), dtype="int64"))

    def _check(self, x):
        raise NotImplementedError

    def forward(self, x):
        self._check(x)
        for state in (self.weight, self._buffers.get("running_mean")):  # PyTorch's rule: no mixed dtypes
            if state is not None:
                F._check_dtype(type(self).__name__, x, state)
        dims = (0,) + tuple(range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training and x.size == self.num_features and x.size:  # PyTorch's rule: one value per channel
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when training, got "
                             f"input of shape {x.shape}")
        if x.size == 0:  # an empty batch: nothing to normalise, and nothing learnt from it
            return x * 1.0
        if self.training or not self.track_running_stats:
            mean = x.mean(dim=dims, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
            if self.training and self.track_running_stats:
                n = x.size // self.num_features
                self.num_batches_tracked._data += 1
                m = 1.0 / float(self.num_batches_tracked._data) if self.momentum is None else self.momentum
                rm, rv = self.running_mean._data, self.running_var._data
                rm *= 1 - m
                rm += m * mean._data.reshape(-1)
                rv *= 1 - m
                rv += m * var._data.reshape(-1) * (n / max(n - 1, 1))
                for b in (self.running_mean, self.running_var):
                    b._bump()
        else:
            mean = self.running_mean.reshape(shape)
            var = self.running_var.reshape(shape)
        y = (x - mean) / (var + self.eps).sqrt()
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    def _check(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L) input, got shape {x.shape}")


class BatchNorm2d(_BatchNorm):
    def _check(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}): expected (N, {self.num_features}, H, W) input, "
                             f"got shape {x.shape}")


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = Parameter(zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x):
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape}: input of shape {x.shape} does not end in it")
        if self.weight is not None:  # PyTorch's rule: no mixed dtypes
            F._check_dtype("LayerNorm", x, self.weight, self.bias)
        if hasattr(backend.device_of(x._data).kernels, "layer_norm_fwd"):  # one pass per row each way
            return LayerNormFn.apply(x, self.weight, self.bias, normalized_shape=self.normalized_shape, eps=self.eps)
        dims = tuple(range(x.ndim - k, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        y = (x - mean) / (var + self.eps).sqrt()
        if self.weight is not None:
            y = y * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table by index; the gradient scatters into the
    rows used (repeats add up)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(empty(num_embeddings, embedding_dim))
        init.normal_(self.weight)

    def forward(self, idx):
        i = backend.device_of(self.weight._data).asarray(idx._data if isinstance(idx, Tensor) else idx)
        if i.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got {i.dtype}")
        if i.size and (i.min() < 0 or i.max() >= self.num_embeddings):
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): index out of range "
                             f"[{int(i.min())}, {int(i.max())}]")
        return self.weight[i]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class NLLLoss(Module):
    """Negative log-likelihood (PyTorch's arguments; ``weight`` a buffer)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__()
        _register_weights(self, weight=weight)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(Module):
    """Sigmoid + binary cross-entropy (PyTorch's arguments; ``weight`` and ``pos_weight``
    buffers)."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__()
        _register_weights(self, weight=weight, pos_weight=pos_weight)
        self.reduction = reduction

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)
