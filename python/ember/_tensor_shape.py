"""Tensor's shapes, as PyTorch's: ``reshape`` and ``view`` (which refuses what needs a copy),
``transpose``, ``permute``, ``flatten``, ``squeeze``/``unsqueeze``, ``expand``, ``repeat``,
``split`` and ``chunk``; and how the dims given to any method are checked."""

from __future__ import annotations

import math
import operator

import numpy as np

from . import _check, backend
from .autograd import shape_functions as shape_fns
from .autograd.function import Function


def _shape(sizes: tuple, what: str) -> tuple:
    """A shape given as ints or as one sequence of ints, as PyTorch takes sizes (NumPy integers
    and one-element integer tensors count as ints)."""
    if len(sizes) == 1 and not hasattr(type(sizes[0]), "__index__"):
        sizes = sizes[0]
    try:
        return tuple(operator.index(s) for s in sizes)
    except TypeError:
        raise TypeError(f"{what}: sizes must be ints or one sequence of ints, got {sizes!r}") from None


def _viewable(arr, shape) -> bool:
    """Whether ``arr`` can be seen with ``shape`` (-1 inferred) without a copy: PyTorch's rule
    (``computeStride``), run from the last dim on chunks of dims whose strides join up."""
    old, strides = arr.shape, arr.strides
    numel = math.prod(old)
    if -1 in shape and shape.count(-1) == 1:
        known = math.prod(s for s in shape if s != -1)
        shape = tuple(numel // known if s == -1 and known else s for s in shape)
    if math.prod(shape) != numel:
        return True  # reshape reports the mismatch
    if not old or numel == 0:
        return True
    view_d, base_stride = len(shape) - 1, strides[-1]
    tensor_numel = view_numel = 1
    for d in range(len(old) - 1, -1, -1):
        tensor_numel *= old[d]
        if d == 0 or (old[d - 1] != 1 and strides[d - 1] != tensor_numel * base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or shape[view_d] == 1):
                view_numel *= shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return False
            if d > 0:
                base_stride, tensor_numel, view_numel = strides[d - 1], 1, 1
    return view_d == -1


class CloneFn(Function):
    """A copy in its own memory, laid out as ``a`` (``order='K'``) or row-major (``'C'``); the
    gradient passes through."""

    grad_name = "Clone"

    @staticmethod
    def forward(ctx, a, order):
        return backend.namespace(a).array(a, copy=True, order=order)

    @staticmethod
    def backward(ctx, g):
        return g


class ShapeMixin:
    """The shape methods of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

    def reshape(self, *shape):
        return shape_fns.ReshapeFn.apply(self, shape=_shape(shape, "reshape"))

    def view(self, *shape):
        """The same memory seen with another shape: an error where the tensor's strides do not
        allow that without a copy (after a transpose, say), as in PyTorch; ``reshape`` copies then."""
        shape = _shape(shape, "view")
        if not _viewable(self._data, shape):
            raise RuntimeError(f"view size {shape} is not compatible with input tensor's size {tuple(self.shape)} and "
                               "stride (at least one dimension spans across two contiguous subspaces). Use "
                               ".reshape(...) instead.")
        return shape_fns.ReshapeFn.apply(self, shape=shape)

    def transpose(self, dim0, dim1):
        d0, d1 = self._dim(dim0, "transpose"), self._dim(dim1, "transpose")
        if self.ndim == 0:  # its one dim, 0 or -1, with itself: a view of the same
            return self.reshape(())
        return shape_fns.TransposeFn.apply(self, dim0=d0, dim1=d1)

    def repeat(self, *sizes):
        """The tensor tiled ``sizes[i]`` times along dim i (leading sizes add dims), a copy;
        differentiable."""
        sizes = _shape(sizes, "repeat")
        if len(sizes) < self.ndim:
            raise RuntimeError(f"repeat: {len(sizes)} repeat sizes for a tensor of {self.ndim} dims (it takes at "
                               "least one per dim)")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        tiles = self.reshape(tuple(v for n in shape for v in (1, n))).expand(
            tuple(v for r, n in zip(sizes, shape) for v in (r, n)))
        return CloneFn.apply(tiles, order="C").reshape(tuple(r * n for r, n in zip(sizes, shape)))

    def flatten(self, start_dim=0, end_dim=-1):
        s, e = self._dim(start_dim, "flatten"), self._dim(end_dim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape[:s] + (math.prod(self.shape[s : e + 1]),) + self.shape[e + 1 :]
        return self.reshape(shape)

    def permute(self, *dims):
        dims = _shape(dims, "permute")
        index = [self._dim(d, "permute") for d in dims]
        if sorted(index) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dimensions")
        return shape_fns.PermuteFn.apply(self, dims=tuple(index))

    def squeeze(self, dim=None):
        """A view without the dims of size 1 among ``dim`` (an int or a tuple of ints; all dims
        when None); always a new tensor, as in PyTorch."""
        dims = range(self.ndim) if dim is None else self._dims(dim, "squeeze")
        dims = {dims} if isinstance(dims, int) else set(dims)
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or i not in dims))

    def unsqueeze(self, dim):
        d = self._dim(dim, "unsqueeze", extra=1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *shape):
        """A view with dims of size 1 repeated (-1 keeps a dim's size); its repeated elements
        share memory, so it is read-only unless nothing was repeated (as PyTorch's are written
        through, writes to a broadcast one are refused)."""
        shape = _shape(shape, "expand")
        if len(shape) == self.ndim and all(s in (-1, n) for s, n in zip(shape, self.shape)):
            return self.reshape(self.shape)
        return shape_fns.ExpandFn.apply(self, shape=shape)

    def split(self, split_size, dim=0):
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the sizes in a
        list: views, as in PyTorch."""
        if self.ndim == 0:
            raise ValueError("split: a 0-d tensor has no dim to split")
        d = self._dim(dim, "split")
        n = self.shape[d]
        if isinstance(split_size, (int, np.integer)) and not isinstance(split_size, bool):
            size = int(split_size)
            if size < 1 and not (size == 0 and n == 0):
                raise ValueError(f"split: split_size must be a positive int, got {split_size}")
            sizes = [size] * (n // size) + ([n % size] if n % size else []) if size else [0]
        else:
            try:
                sizes = [_check.integer(k, "split: each size", lo=0) for k in split_size]
            except TypeError:
                raise TypeError(f"split: split_size must be an int or a list of ints, got {split_size!r}") from None
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to dim {dim}'s {n}")
        return shape_fns.SplitFn.apply(self, sizes=sizes, dim=d)

    def chunk(self, chunks, dim=0):
        """At most ``chunks`` pieces of equal size along ``dim`` (the last may be smaller)."""
        chunks = _check.integer(chunks, "chunk: chunks", lo=1)
        if self.ndim == 0:
            raise ValueError("chunk: a 0-d tensor has no dim to split")
        n = self.shape[self._dim(dim, "chunk")]
        return self.split(max(-(-n // chunks), 1) if n else 0, dim)

    def _dim(self, dim, what, extra=0) -> int:
        """``dim`` in [-n, n) for n = ndim + extra (a 0-d tensor has the one dim 0 or -1, as in
        PyTorch), as a non-negative index; else an IndexError naming ``what``."""
        n = max(self.ndim + extra, 1)
        if isinstance(dim, bool) or not hasattr(type(dim), "__index__"):
            raise TypeError(f"{what}: dim must be an int, got {dim!r}")
        dim = operator.index(dim)
        if not -n <= dim < n:
            raise IndexError(f"{what}: dim {dim} is out of range for a tensor of {self.ndim} dimensions "
                             f"(expected one in [{-n}, {n - 1}])")
        return dim % n

    def _dims(self, dim, what):
        """``dim`` of a reduction -- None, an int or a sequence of ints -- with each dim checked
        and made a non-negative int."""
        if dim is None:
            return None
        if hasattr(type(dim), "__index__"):
            return self._dim(dim, what)
        return tuple(self._dim(d, what) for d in dim)
