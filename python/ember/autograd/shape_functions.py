"""The differentiable ops that move elements without computing with them, one Function each:
reshapes, transposes and permutes, broadcasting, indexing, joining and splitting (see
``functions`` for the conventions they share)."""

from __future__ import annotations

import itertools

from .. import backend
from .function import Function, owned
from .functions import unbroadcast

_xp = backend.namespace
_xps = backend.namespace_of


# ----------------------------------------------------------------------- shapes, indexing, joining


class ReshapeFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class TransposeFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dim0, dim1):
        ctx.dims = (dim0, dim1)
        return _xp(a).swapaxes(a, dim0, dim1)

    @staticmethod
    def backward(ctx, g):
        return _xp(g).swapaxes(g, *ctx.dims)


class TakeAlongDimFn(Function):
    """The elements of ``a`` that ``index`` (``a``'s shape with ``dim`` of size 1) picks along
    ``dim``: max/min along a dim once argmax/argmin found them. The gradient goes to the picked
    elements."""

    @staticmethod
    def forward(ctx, a, index, dim, keepdim=False):
        xp = _xp(a)
        flat = a.reshape(1) if a.ndim == 0 else a
        ctx.dim, ctx.size, ctx.shape, ctx.index = dim, flat.shape[dim], a.shape, index
        values = xp.take_along_axis(flat, index, axis=dim)
        if a.ndim == 0:
            return values.reshape(())
        return values if keepdim else xp.squeeze(values, axis=dim)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        g = g.reshape(ctx.index.shape)  # restores a squeezed dim (or the 0-d case's one)
        span = [1] * ctx.index.ndim
        span[ctx.dim] = ctx.size
        hit = xp.arange(ctx.size).reshape(span) == ctx.index
        return xp.where(hit, g, g.dtype.type(0)).reshape(ctx.shape), None


class PermuteFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return _xp(a).transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        inverse = sorted(range(len(ctx.dims)), key=ctx.dims.__getitem__)
        return _xp(g).transpose(g, inverse)


class ExpandFn(Function):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        lead = len(shape) - a.ndim  # new leading dimensions: -1 (keep the size) means nothing there
        if lead < 0:
            raise ValueError(f"expand: {tuple(shape)} has fewer dimensions than the tensor's {a.shape}")
        if any(s == -1 for s in shape[:lead]):
            raise ValueError(f"expand: -1 in a new leading dimension of {tuple(shape)} (the tensor has {a.ndim})")
        shape = tuple(s if s != -1 else a.shape[i - lead] for i, s in enumerate(shape))
        return _xp(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape)


def _own_key(key):
    """An index as backward will use it, its arrays copied: a caller's later change to the
    index array must not move the gradient."""
    return tuple(owned(k) for k in key) if isinstance(key, tuple) else owned(key)


class IndexFn(Function):
    """a[key]: basic and integer-array indexing; backward scatters, so repeated indices add up."""

    view = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.dtype, ctx.key = a.shape, a.dtype, _own_key(key)
        out = a[key]
        if type(out) is not type(a):  # integers all the way down: a 0-d view instead of NumPy's scalar copy
            out = a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return out

    @staticmethod
    def backward(ctx, g):
        dev = backend.device_of(g)
        out = dev.xp.zeros(ctx.shape, ctx.dtype)
        dev.scatter_add(out, ctx.key, g)
        return out


class CatFn(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return _xps(*arrays).concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(_xp(g).split(g, list(itertools.accumulate(ctx.sizes))[:-1], axis=ctx.dim))


class StackFn(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        return _xps(*arrays).stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(_xp(g).moveaxis(g, ctx.dim, 0))


class SplitFn(Function):
    """Pieces of ``sizes`` along ``dim``: one output per piece."""

    view = True

    @staticmethod
    def forward(ctx, a, sizes, dim):
        ctx.dim = dim
        return tuple(_xp(a).split(a, list(itertools.accumulate(sizes))[:-1], axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return _xps(*grads).concatenate(grads, axis=ctx.dim)
