"""Tensor's reductions, as PyTorch's: ``sum``, ``mean``, ``max``/``min`` (over everything, or
``(values, indices)`` along a dim), ``amax``/``amin``, ``argmax``/``argmin``, ``logsumexp``,
``var`` and ``std``."""

from __future__ import annotations

from typing import NamedTuple

from . import _dtypes, backend
from .autograd import functions as fns
from .autograd import shape_functions as shape_fns


class ValuesIndices(NamedTuple):
    """What ``max(dim)`` and ``min(dim)`` return, as PyTorch's ``return_types``: the extremes and
    their indices along the dim."""

    values: Tensor  # noqa: F821 (ember.Tensor, of which this module is a part; annotations are not evaluated)
    indices: Tensor  # noqa: F821


class ReductionMixin:
    """The reductions of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

    def sum(self, dim=None, keepdim=False, dtype=None):
        """The sum over ``dim`` (an int, a tuple of ints, or None for all), in ``dtype`` when
        given (the input is cast first); an integer or bool tensor sums in int64, as in PyTorch."""
        x = self.type(_dtypes.dtype(dtype, "sum")) if dtype is not None else \
            self if self.dtype.kind == "f" else self.long()
        return fns.SumFn.apply(x, dim=self._dims(dim, "sum"), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, dtype=None):
        """The mean over ``dim``, of a floating tensor or in a floating ``dtype``."""
        x = self if dtype is None else self.type(_dtypes.dtype(dtype, "mean"))
        x._floating_only("mean")
        return fns.MeanFn.apply(x, dim=self._dims(dim, "mean"), keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """The largest element (a 0-d tensor; ties share the gradient); along ``dim``,
        ``(values, indices)`` as in PyTorch: the first largest element, or the first NaN, and
        its index. ``amax`` reduces several dims at once (and keeps them with ``keepdim``)."""
        if dim is None:
            return self._all_extreme("max", keepdim, largest=True)
        return self._extreme(dim, keepdim, largest=True)

    def min(self, dim=None, keepdim=False):
        """The smallest element, or ``(values, indices)`` along ``dim``: see ``max``."""
        if dim is None:
            return self._all_extreme("min", keepdim, largest=False)
        return self._extreme(dim, keepdim, largest=False)

    def _all_extreme(self, what, keepdim, largest):
        if keepdim:
            raise TypeError(f"{what}: keepdim needs a dim; amax/amin(keepdim=True) keep every dim")
        return fns.MaxReduceFn.apply(self, largest=largest)

    def amax(self, dim=None, keepdim=False):
        """The largest values over ``dim`` (an int, a tuple of ints, or None for all); the
        gradient is shared evenly among tied maxima."""
        return fns.MaxReduceFn.apply(self, dim=self._dims(dim, "amax"), keepdim=keepdim, largest=True)

    def amin(self, dim=None, keepdim=False):
        """The smallest values over ``dim``: see ``amax``."""
        return fns.MaxReduceFn.apply(self, dim=self._dims(dim, "amin"), keepdim=keepdim, largest=False)

    def _extreme(self, dim, keepdim, largest) -> ValuesIndices:
        what = "max" if largest else "min"
        d = self._dim(dim, what)
        data = self._data.reshape(1) if self.ndim == 0 else self._data
        if data.shape[d] == 0:
            raise IndexError(f"{what}: dim {dim} has size 0, so it has no {'largest' if largest else 'smallest'} "
                             "element")
        xp = backend.namespace(data)
        index = (xp.argmax if largest else xp.argmin)(data, axis=d, keepdims=True)
        values = shape_fns.TakeAlongDimFn.apply(self, index, dim=d, keepdim=keepdim)
        # a copy: backward reads the saved index, which a change to the returned one must not move
        index = index.reshape(values.shape) if self.ndim == 0 or not keepdim else index
        return ValuesIndices(values, self._wrap(index.copy()))

    def argmax(self, dim=None, keepdim=False):
        """Index of the largest element (the first one, or the first NaN), over all elements
        (of shape (1,) * ndim with ``keepdim``) or along ``dim``; no gradient."""
        return self._arg(dim, keepdim, "argmax")

    def argmin(self, dim=None, keepdim=False):
        """Index of the smallest element: see ``argmax``."""
        return self._arg(dim, keepdim, "argmin")

    def _arg(self, dim, keepdim, what):
        xp = backend.namespace(self._data)
        find = getattr(xp, what)
        if self.size == 0 and (dim is None or self.shape[self._dim(dim, what)] == 0):
            raise IndexError(f"{what} of an empty {'tensor' if dim is None else 'dim'}")
        if dim is None:
            return self._wrap(xp.asarray(find(self._data)).reshape((1,) * self.ndim if keepdim else ()))
        if self.ndim == 0:
            self._dim(dim, what)
            return self._wrap(xp.asarray(0))
        return self._wrap(find(self._data, axis=self._dim(dim, what), keepdims=keepdim))

    def logsumexp(self, dim=None, keepdim=False):
        return fns.LogSumExpFn.apply(self._floating(), dim=self._dims(dim, "logsumexp"), keepdim=keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """The variance over ``dim``, dividing by the count less ``correction`` (1 unless given;
        ``unbiased=False`` is ``correction=0``), with PyTorch's argument order."""
        if isinstance(dim, bool):  # PyTorch's var(unbiased)
            dim, unbiased = None, dim
        if unbiased is not None and correction is not None:
            raise TypeError("var: give unbiased or correction, not both")
        self._floating_only("var")
        correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        return fns.VarFn.apply(self, dim=self._dims(dim, "var"), keepdim=keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """The standard deviation: the square root of ``var`` (same arguments)."""
        variance = self.var(dim, unbiased, keepdim, correction=correction)
        return fns.SqrtFn.apply(variance, zero_at_zero=True)
