"""The inference path of ``nn.Sequential``: in eval mode, without autograd, on the CPU in float32,
its layers' kernels run directly on the arrays -- no graph, no tensor per layer -- planned once
per input shape: the convolutions, linears, ReLUs, poolings and reshapes before any other layer
become one ``_C.InferencePlan``, which checks the shapes when it is made and runs all its kernels
in one call without the GIL, a ReLU after a convolution or a Linear fused into that kernel's
epilogue and the max pooling's indices (which only a backward needs) not computed.

The outputs are the layer-by-layer forward's values exactly (a fused ReLU may keep a zero's
negative sign: -0.0 == 0.0), and every layer runs exactly once. Layers it does not know
(BatchNorm, LayerNorm, the activations but ReLU, a model's own modules) run as they always do, on
this path's arrays, their errors raised as they are; what follows them is planned for the shape
they return, or, when they return anything but a float32 host tensor (another dtype, a tuple),
runs layer by layer on what they returned. Anything unusual -- another device, dtype or
precision policy, a layer whose forward was replaced (as profiling does) -- takes the
layer-by-layer forward, and so do the layers of a plan that refuses the input or the weights,
which raise the errors a bad input deserves. Weights are passed at each call, so training
between calls needs no invalidation; the plan is made again when a layer's configuration or the
model's structure changes, or when weights no longer fit it.
"""

from __future__ import annotations

import weakref
from operator import attrgetter

import numpy as np

from .. import backend, precision
from ..autograd.engine import is_grad_enabled
from ..kernels import _geometry
from ..tensor import Tensor
from . import layers as L

_F32 = np.dtype(np.float32)


def _leaves(seq, out):
    """The modules a Sequential applies in order, nested plain Sequentials opened (None when one
    of them had its forward replaced on the instance, as profiling does)."""
    for m in seq._modules.values():
        if m is None:
            continue
        if "forward" in m.__dict__:
            return None
        if type(m) is L.Sequential:
            if _leaves(m, out) is None:
                return None
        else:
            out.append(m)
    return out


def _data(t):
    return None if t is None else t._data


# What a plan for a layer depends on besides the input's shape and the layer itself (its type and
# id; the cache holds the layer, so no other takes its id while the plan is cached). Weights are
# not part of it: each run passes them, and a plan whose weights no longer fit (another shape,
# dtype or device) raises and is made again.
_CONFIG = {
    L.Conv2d: attrgetter("stride", "padding", "dilation", "groups"),
    L.Linear: attrgetter("in_features", "out_features"),
    L.MaxPool2d: attrgetter("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    L.AvgPool2d: attrgetter("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    L.AdaptiveAvgPool2d: attrgetter("output_size"),
    L.Flatten: attrgetter("start_dim", "end_dim"),
    L.Dropout: attrgetter("training"),
}


def _unconfigured(m):
    return None


def _key(shape, leaves):
    config = _CONFIG.get
    return shape, tuple([(type(m), id(m), config(type(m), _unconfigured)(m)) for m in leaves])


def _flattened(shape, start, end):
    nd = len(shape)
    s, e = start % nd if nd else 0, end % nd if nd else 0
    if not (-nd <= start < nd and -nd <= end < nd) or s > e:
        raise ValueError("flatten dims out of range")
    return shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]


# Step kinds.
CONV, LINEAR, RELU, MAXPOOL, AVGPOOL, ADAPTIVE, RESHAPE, LAYER = range(8)


def _plan(leaves, shape):
    """The steps for an input of `shape`: (kind, module, arguments, output shape, relu), the
    kernel steps then compiled (see _compiled); the last may be a layer of its own (LAYER), whose
    arguments are the layers after it, planned at run time for what it returns."""
    steps, input_shape = [], shape
    i = 0
    while i < len(leaves):
        m = leaves[i]
        t = type(m)
        fuse = i + 1 < len(leaves) and type(leaves[i + 1]) is L.ReLU
        if t is L.Conv2d:
            if len(shape) != 4:
                return None
            g = _geometry.conv2d_geometry(shape, m.weight.shape, m.stride, m.padding, m.dilation, m.groups)
            steps.append((CONV, m, g.native_args(), g.output_shape, fuse))
            shape, i = g.output_shape, i + 1 + fuse
        elif t is L.Linear:
            if not shape or shape[-1] != m.in_features:
                return None
            out = shape[:-1] + (m.out_features,)
            steps.append((LINEAR, m, (int(np.prod(shape[:-1])), m.in_features), out, fuse))
            shape, i = out, i + 1 + fuse
        elif t is L.ReLU:
            steps.append((RELU, m, (), shape, False))
            i += 1
        elif t is L.AvgPool2d or (t is L.MaxPool2d and not m.return_indices):  # (output, indices): a layer
            if len(shape) != 4:
                return None
            dilation = m.dilation if t is L.MaxPool2d else 1
            g = _geometry.pool2d_geometry(shape, m.kernel_size, m.stride, m.padding, dilation, m.ceil_mode)
            out = shape[:2] + (g.oh, g.ow)
            if t is L.MaxPool2d:
                steps.append((MAXPOOL, m, (*g.native_args(), *g.dilation), out, False))
            else:
                steps.append((AVGPOOL, m, (*g.native_args(), int(bool(m.count_include_pad))), out, False))
            shape, i = out, i + 1
        elif t is L.AdaptiveAvgPool2d:
            oh, ow = _geometry.pair(m.output_size, "output_size", 1)
            if len(shape) != 4 or shape[2] < 1 or shape[3] < 1:
                return None
            out = shape[:2] + (oh, ow)
            steps.append((ADAPTIVE, m, (), out, False))
            shape, i = out, i + 1
        elif t is L.Flatten:
            out = _flattened(shape, m.start_dim, m.end_dim) if shape else (1,)
            steps.append((RESHAPE, m, (), out, False))
            shape, i = out, i + 1
        elif t is L.Identity or (t is L.Dropout and not m.training):
            i += 1  # in eval mode Dropout is the identity (one left training drops, as a layer)
        else:
            steps.append((LAYER, m, leaves[i + 1:], None, False))
            break
    return _compiled(steps, input_shape)


NATIVE = -1  # kernel steps run by one _C.InferencePlan
_WEIGHTS = ("weight", "bias")


def _compiled(steps, shape):
    """steps, the kernel steps before any layer of its own made one NATIVE step (plan, the
    parameters of the convolutions and linears, whose weights each run passes it) -- or one
    reshape when that is all they do."""
    n = next((i for i, step in enumerate(steps) if step[0] == LAYER), len(steps))
    head, tail = steps[:n], steps[n:]
    if any(step[0] != RESHAPE for step in head):
        weighted = tuple(m._parameters for kind, m, *_ in head if kind in (CONV, LINEAR))
        native = [(kind, args, out, relu, m.weight.shape if kind in (CONV, LINEAR) else None)
                  for kind, m, args, out, relu in head]
        plan = backend.CPU.kernels.InferencePlan(shape, native)
        head = [(NATIVE, plan, weighted, head[-1][3], False)]
    elif head:
        head = [(RESHAPE, None, (), head[-1][3], False)]
    return head + tail


def _array(t):
    """``t``'s values as a contiguous host float32 array when ``t`` is a plain Tensor holding
    them (what a plan takes), else None."""
    if type(t) is not Tensor or type(t._data) is not np.ndarray or t._data.dtype != _F32:
        return None
    return np.ascontiguousarray(t._data)


def _in_order(leaves, x):
    """The layer-by-layer forward of ``leaves`` from ``x``."""
    for m in leaves:
        x = m(x)
    return x


_CACHE_LIMIT = 16  # input shapes a model remembers plans for
# Each model's plans, outside the model: copying or pickling a model copies no plan.
_PLANS = weakref.WeakKeyDictionary()


def _run_leaves(leaves, x, cache):
    """What ``leaves`` applied in order to the host float32 array ``x`` return, each run once:
    their plan for ``x``'s shape, or the layer-by-layer forward where there is none."""
    key = _key(x.shape, leaves)
    try:
        entry = cache.get(key)
    except TypeError:  # a configuration no key can hold (a list set after construction)
        return _in_order(leaves, Tensor._wrap(x))
    if entry is None:
        try:
            steps = _plan(leaves, x.shape)
        except (ValueError, TypeError):  # a shape or weights the layers refuse: they say why
            return _in_order(leaves, Tensor._wrap(x))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        entry = cache[key] = (steps, tuple(leaves))  # the layers held with their plan (see _CONFIG)
    steps = entry[0]
    if steps is None:
        return _in_order(leaves, Tensor._wrap(x))
    for kind, m, args, out, _ in steps:
        if kind == NATIVE:  # always the first step: nothing has run yet
            try:
                x = m.run(x, [_data(p.get(name)) for p in args for name in _WEIGHTS])
            except (ValueError, TypeError):  # weights that no longer fit the plan: the next call plans anew
                cache.pop(key, None)
                return _in_order(leaves, Tensor._wrap(x))
        elif kind == RESHAPE:
            x = x.reshape(out)
        else:  # a layer of its own, then the layers after it on what it returned
            y = m(Tensor._wrap(x))
            a = _array(y) if args else None
            return _in_order(args, y) if a is None else _run_leaves(args, a, cache)
    return Tensor._wrap(x)


def forward(seq, x):
    """``seq``'s output for ``x`` on the inference path, or NotImplemented when it does not
    apply (see the module's docstring); nothing has run then."""
    if seq.training or is_grad_enabled() or precision.current().low_precision_matmul:
        return NotImplemented
    a = _array(x)
    leaves = None if a is None else _leaves(seq, [])
    if not leaves:
        return NotImplemented
    cache = _PLANS.get(seq)
    if cache is None:
        cache = _PLANS[seq] = {}
    return _run_leaves(leaves, a, cache)
