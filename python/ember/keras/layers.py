"""Keras's layers over Ember's: ``Conv2D``, ``MaxPooling2D``, ``AveragePooling2D``,
``GlobalAveragePooling2D``, ``Dense``, ``Flatten``, ``Dropout``, ``BatchNormalization``,
``Activation`` and ``Input``.

Each infers its input size at its first call (``build``), takes Keras's arguments and
initialisers (Glorot-uniform kernels, zero biases) and applies an optional ``activation``. The
model converts channels-last images (N, H, W, C) to Ember's NCHW once at its input, so inside
a model these layers compute in NCHW: ``Flatten`` orders features channel-first, which only
matters when importing weights trained elsewhere.
"""

from __future__ import annotations

import math

from .. import _check, nn
from ..kernels import _geometry
from ..nn import functional as F
from ..nn import init

_ACTIVATIONS = {
    None: None,
    "linear": None,
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "softmax": lambda x: F.softmax(x, 1),  # Keras's last axis: the channels, axis 1 in NCHW
    "log_softmax": lambda x: F.log_softmax(x, 1),
}


def activation_fn(name):
    """The function of a Keras activation name (None and 'linear': none)."""
    if callable(name):
        return name
    key = name.lower() if isinstance(name, str) else name
    if key not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(k for k in _ACTIVATIONS if k)} or a callable, "
                         f"got {name!r}")
    return _ACTIVATIONS[key]


def _ints(value, n, name):
    value = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(value) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError(f"{name} must be a positive int or {n} of them, got {value!r}")
    return value


def _input_shape(shape, what: str):
    """A Keras input shape (without the batch) as a tuple of positive ints; one int is a 1-D shape."""
    if shape is None:
        return None
    dims = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
    try:
        if isinstance(dims, (str, bytes)):
            raise TypeError
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"{what}: input_shape must be a tuple of ints (without the batch), got "
                        f"{type(shape).__name__} {shape!r}") from None
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"{what}: input_shape must be positive ints (without the batch), got {shape!r}")
    return dims


def _fraction(value, name: str, lo_open: bool, hi_open: bool) -> float:
    """A float between 0 and 1 (ends open as asked), for Keras's rates and momenta."""
    value = _check.real(value, name)
    if not ((0.0 < value) if lo_open else (0.0 <= value)) or not ((value < 1.0) if hi_open else (value <= 1.0)):
        span = f"{'(' if lo_open else '['}0, 1{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {span}, got {value!r}")
    return value


def _padding(padding):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


class Layer(nn.Module):
    """A Keras-style layer: built at its first call from the input's shape, then ``compute``
    followed by the activation. ``input_shape`` (channels-last, without the batch) lets a model
    build before it sees data."""

    def __init__(self, activation=None, input_shape=None, name=None):
        super().__init__()
        object.__setattr__(self, "activation", activation_fn(activation))
        object.__setattr__(self, "activation_name", activation if isinstance(activation, str) else None)
        object.__setattr__(self, "input_shape", _input_shape(input_shape, type(self).__name__))
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a str, got {type(name).__name__}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "built", False)

    def build(self, shape) -> None:
        """Create the weights for inputs of ``shape`` (NCHW or (N, features), batch included)."""

    def _children_restored(self) -> None:
        # Rebuilt from a checkpoint's description with the sub-modules ``build`` makes.
        object.__setattr__(self, "built", True)

    def compute(self, x):
        return x

    def logits(self, x):
        """The layer's output before its activation."""
        if not self.built:
            self.build(tuple(x.shape))
            object.__setattr__(self, "built", True)
            for m in self.modules():  # what build made takes the layer's mode
                object.__setattr__(m, "training", self.training)
        return self.compute(x)

    def forward(self, x):
        y = self.logits(x)
        return y if self.activation is None else self.activation(y)


class Input(Layer):
    """The model's input shape (channels-last, without the batch), as ``keras.Input``."""

    def __init__(self, shape, name=None):
        super().__init__(input_shape=shape, name=name)


class Conv2D(Layer):
    """``Conv2D(filters, kernel_size, strides=1, padding='valid', dilation_rate=1,
    activation=None, use_bias=True)``; 'same' pads as Keras does (stride 1)."""

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 activation=None, use_bias: bool = True, groups: int = 1, input_shape=None, name=None):
        super().__init__(activation, input_shape, name)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        self.filters, self.groups, self.use_bias = filters, groups, use_bias
        self.kernel_size = _ints(kernel_size, 2, "Conv2D: kernel_size")
        self.strides = _ints(strides, 2, "Conv2D: strides")
        self.dilation_rate = _ints(dilation_rate, 2, "Conv2D: dilation_rate")
        self.padding = _padding(padding)

    def build(self, shape):
        if len(shape) != 4:
            raise ValueError(f"Conv2D takes images (batch, height, width, channels), got shape {shape}")
        self.conv = nn.Conv2d(shape[1], self.filters, self.kernel_size, self.strides, self.padding,
                              self.dilation_rate, self.groups, self.use_bias)
        # glorot_uniform, Keras's default, with Keras's fans of the kernel (kh, kw, in / groups, filters)
        fan_in = shape[1] // self.groups * math.prod(self.kernel_size)
        fan_out = self.filters * math.prod(self.kernel_size)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        init.uniform_(self.conv.weight, -limit, limit)
        if self.use_bias:
            init.zeros_(self.conv.bias)

    def compute(self, x):
        return self.conv(x)


class Dense(Layer):
    """``Dense(units, activation=None, use_bias=True)`` on (batch, features)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True, input_shape=None, name=None):
        super().__init__(activation, input_shape, name)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units, self.use_bias = units, use_bias

    def build(self, shape):
        if len(shape) != 2:
            raise ValueError(f"Dense takes (batch, features), got shape {shape}: add Flatten() before it")
        self.linear = nn.Linear(shape[1], self.units, self.use_bias)
        init.xavier_uniform_(self.linear.weight)
        if self.use_bias:
            init.zeros_(self.linear.bias)

    def compute(self, x):
        return self.linear(x)


def _same_pool(size: int, k: int, s: int) -> tuple[int, bool]:
    """Keras's 'same' pooling along one axis (output ceil(size / s), the extra padding at the
    end) as Ember's symmetric padding and ceil mode."""
    want = -(-size // s)
    total = max((want - 1) * s + k - size, 0)
    pad = total // 2
    for ceil in (False, True):
        if pad <= k // 2 and _geometry.pool_output_size(size, k, pad, s, 1, ceil) == want:
            return pad, ceil
    raise ValueError(f"padding='same' with pool size {k} and stride {s} on {size} pixels puts more padding "
                     "before the input than after it; Ember pools with symmetric padding: use padding='valid'")


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", input_shape=None, name=None):
        super().__init__(None, input_shape, name)
        self.pool_size = _ints(pool_size, 2, f"{type(self).__name__}: pool_size")
        self.strides = self.pool_size if strides is None else _ints(strides, 2, f"{type(self).__name__}: strides")
        self.padding = _padding(padding)
        self.pads, self.ceil = (0, 0), False

    def build(self, shape):
        if len(shape) != 4:
            raise ValueError(f"{type(self).__name__} takes images (batch, height, width, channels), got {shape}")
        if self.padding == "same":
            (ph, ch), (pw, cw) = (_same_pool(n, k, s) for n, k, s in zip(shape[2:], self.pool_size, self.strides))
            if ch != cw:
                raise ValueError(f"padding='same' on a {shape[2]}x{shape[3]} input needs ceil mode along one "
                                 "axis only; use padding='valid'")
            self.pads, self.ceil = (ph, pw), ch


class MaxPooling2D(_Pooling2D):
    """``MaxPooling2D(pool_size=(2, 2), strides=None, padding='valid')``."""

    def compute(self, x):
        return F.max_pool2d(x, self.pool_size, self.strides, self.pads, 1, self.ceil)


class AveragePooling2D(_Pooling2D):
    """``AveragePooling2D(pool_size=(2, 2), strides=None, padding='valid')``: 'same' averages
    over the pixels inside the input, as Keras does."""

    def compute(self, x):
        return F.avg_pool2d(x, self.pool_size, self.strides, self.pads, self.ceil, count_include_pad=False)


class GlobalAveragePooling2D(Layer):
    """The mean over height and width: (batch, channels)."""

    def compute(self, x):
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Flatten(Layer):
    """(batch, ...) to (batch, features)."""

    def compute(self, x):
        return x.flatten(1)


class Dropout(Layer):
    """``Dropout(rate)``: zeroes a fraction ``rate`` of the inputs while training."""

    def __init__(self, rate: float, input_shape=None, name=None):
        super().__init__(None, input_shape, name)
        self.rate = _fraction(rate, "Dropout: rate", lo_open=False, hi_open=True)

    def compute(self, x):
        return F.dropout(x, self.rate, self.training)


class BatchNormalization(Layer):
    """``BatchNormalization(momentum=0.99, epsilon=0.001)`` over the channels, as Keras's: while
    training it normalises by the batch's mean and (biased) variance and the moving statistics
    become ``momentum * moving + (1 - momentum) * batch`` -- the biased variance too, where
    PyTorch's running variance takes the unbiased one -- and a batch of one sample trains
    (its output is the bias). In evaluation mode it normalises by the moving statistics. They
    and the scale and offset are held by an ``ember.nn`` BatchNorm module (``bn``), which
    checkpoints and the tools that fold BatchNorm read."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, input_shape=None, name=None):
        super().__init__(None, input_shape, name)
        momentum = _fraction(momentum, "BatchNormalization: momentum", lo_open=False, hi_open=False)
        epsilon = _check.real(epsilon, "BatchNormalization: epsilon")
        if not 0.0 < epsilon < float("inf"):  # it is added to the variance before the square root
            raise ValueError(f"BatchNormalization: epsilon must be > 0 and finite, got {epsilon!r}")
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, shape):
        if len(shape) not in (2, 4):
            raise ValueError(f"BatchNormalization takes (batch, features) or images, got shape {shape}")
        cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
        self.bn = cls(shape[1], eps=self.epsilon, momentum=1.0 - self.momentum)

    def compute(self, x):
        bn = self.bn
        if not self.training or x.size == 0:
            return bn(x)
        bn._check(x)
        dims = (0, *range(2, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        for moving, batch in ((bn.running_mean, mean), (bn.running_var, var)):
            moving._data *= self.momentum
            moving._data += (1.0 - self.momentum) * batch._data.reshape(-1)
            moving._bump()
        bn.num_batches_tracked._data += 1
        return (x - mean) / (var + self.epsilon).sqrt() * bn.weight.reshape(mean.shape) + bn.bias.reshape(mean.shape)


class Activation(Layer):
    """``Activation('relu')`` and the other activation names."""

    def __init__(self, activation, input_shape=None, name=None):
        super().__init__(activation, input_shape, name)


for _layer in (Conv2D, Dense, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Dropout,
               BatchNormalization, Activation):
    nn.register(_layer, name=f"keras.{_layer.__name__}")
