"""The inference path of ``nn.Sequential``: in eval mode, without autograd, on the CPU in float32,
its layers' kernels are called directly on the arrays -- no graph, no tensor per layer, the
shapes worked out once per input shape -- with a ReLU after a convolution or a Linear fused into
that kernel's epilogue and the max pooling's indices (which only a backward needs) not computed.

The outputs are the layer-by-layer forward's values exactly (a fused ReLU may keep a zero's
negative sign: -0.0 == 0.0). Layers it does not know (BatchNorm, LayerNorm, the activations but
ReLU, a model's own modules) run as they always do, on this path's arrays; anything unusual --
another device, dtype or precision policy, a layer whose forward was replaced (as profiling
does) -- takes the layer-by-layer forward, which also raises the errors a bad input deserves.
Weights are read at each call, so training between calls needs no invalidation; the plan is
rebuilt when a layer's configuration or the model's structure changes.
"""

from __future__ import annotations

import numpy as np

from .. import _C, precision
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


def _host(t):
    """A parameter's array when it is a host float32 one; None for no parameter, False for one
    elsewhere or of another dtype."""
    if t is None:
        return None
    a = t._data
    return a if type(a) is np.ndarray and a.dtype == _F32 else False


def _config(m):
    """What a plan for layer m depends on besides the input's shape: the module itself (a plan's
    steps hold it, so its id stays its own) and its configuration (weights are read at run time)."""
    t = type(m)
    if t is L.Conv2d:
        return (id(m), m.stride, m.padding, m.dilation, m.groups, m.weight.shape, m.bias is None)
    if t is L.Linear:
        return (id(m), m.weight.shape, m.bias is None)
    if t is L.MaxPool2d:
        return (id(m), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if t is L.AvgPool2d:
        return (id(m), m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
    if t is L.AdaptiveAvgPool2d:
        return (id(m), m.output_size)
    if t is L.Flatten:
        return (id(m), m.start_dim, m.end_dim)
    if t is L.Dropout:
        return (id(m), m.training)
    return id(m)


def _flattened(shape, start, end):
    nd = len(shape)
    s, e = start % nd if nd else 0, end % nd if nd else 0
    if not (-nd <= start < nd and -nd <= end < nd) or s > e:
        raise ValueError("flatten dims out of range")
    return shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]


# Step kinds.
CONV, LINEAR, RELU, MAXPOOL, AVGPOOL, ADAPTIVE, RESHAPE, LAYER = range(8)


def _plan(leaves, shape):
    """The steps for an input of `shape`: (kind, module, arguments, output shape, relu)."""
    steps = []
    i = 0
    while i < len(leaves):
        m = leaves[i]
        t = type(m)
        fuse = i + 1 < len(leaves) and type(leaves[i + 1]) is L.ReLU
        if t is L.Conv2d:
            if len(shape) != 4 or _host(m.weight) is False or _host(m.bias) is False:
                return None
            g = _geometry.conv2d_geometry(shape, m.weight.shape, m.stride, m.padding, m.dilation, m.groups)
            steps.append((CONV, m, g.native_args(), g.output_shape, fuse))
            shape, i = g.output_shape, i + 1 + fuse
        elif t is L.Linear:
            if not shape or shape[-1] != m.in_features or _host(m.weight) is False or _host(m.bias) is False:
                return None
            out = shape[:-1] + (m.out_features,)
            steps.append((LINEAR, m, (int(np.prod(shape[:-1])), m.in_features), out, fuse))
            shape, i = out, i + 1 + fuse
        elif t is L.ReLU:
            steps.append((RELU, m, (), shape, False))
            i += 1
        elif t in (L.MaxPool2d, L.AvgPool2d):
            if len(shape) != 4:
                return None
            dilation = m.dilation if t is L.MaxPool2d else 1
            g = _geometry.pool2d_geometry(shape, m.kernel_size, m.stride, m.padding, dilation, m.ceil_mode)
            out = shape[:2] + (g.oh, g.ow)
            if t is L.MaxPool2d:
                steps.append((MAXPOOL, m, (*g.native_args(), *g.dilation), out, False))
            else:
                steps.append((AVGPOOL, m, (*g.native_args(), bool(m.count_include_pad)), out, False))
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
            steps.append((LAYER, m, (), None, False))
            shape, i = None, i + 1
            if i < len(leaves):  # the rest is planned at run time from what this layer returns
                steps.append((None, leaves[i:], (), None, False))
            break
    return steps


def _run(steps, x, cache):
    for kind, m, args, out, relu in steps:
        if kind is None:  # after a layer of its own: plan the rest for the shape it gave
            return _run_leaves(m, x, cache)
        if kind == LAYER:
            x = m(Tensor._wrap(x))._data
            if type(x) is not np.ndarray or x.dtype != _F32:
                return None
            continue
        if kind == RESHAPE:
            x = x.reshape(out)
            continue
        y = np.empty(out, _F32)
        if kind == CONV:
            _C.conv2d_fwd(x, m.weight._data, None if m.bias is None else m.bias._data, y, *args, relu)
        elif kind == LINEAR:
            _C.gemm(x.reshape(args), m.weight._data, y.reshape(args[0], -1), 1.0, 0.0, False, True,
                    None if m.bias is None else m.bias._data, relu)
        elif kind == RELU:
            _C.relu_fwd(x, y)
        elif kind == MAXPOOL:
            _C.max_pool2d_fwd(x, y, None, *args)
        elif kind == AVGPOOL:
            _C.avg_pool2d_fwd(x, y, *args)
        else:
            _C.adaptive_avg_pool2d_fwd(x, y)
        x = y
    return x


_CACHE_LIMIT = 16  # input shapes a model remembers plans for


def _run_leaves(leaves, x, cache):
    key = (x.shape, tuple(_config(m) for m in leaves))
    steps = cache.get(key)
    if steps is None:
        steps = _plan(leaves, x.shape)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = steps
    return None if steps is None else _run(steps, x, cache)


def forward(seq, x):
    """``seq``'s output for ``x`` on the inference path, or None when it does not apply (see the
    module's docstring)."""
    if seq.training or is_grad_enabled() or type(x) is not Tensor or precision.current().low_precision_matmul:
        return None
    a = x._data
    if type(a) is not np.ndarray or a.dtype != _F32:
        return None
    leaves = _leaves(seq, [])
    if not leaves:
        return None
    cache = seq.__dict__.get("_inference_plans")
    if cache is None:
        cache = seq.__dict__["_inference_plans"] = {}
    try:
        y = _run_leaves(leaves, np.ascontiguousarray(a), cache)
    except (ValueError, TypeError):  # the layer-by-layer forward says what is wrong
        return None
    return None if y is None else Tensor._wrap(y)
