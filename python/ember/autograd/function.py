"""Function: one differentiable op, its forward and backward side by side.

``forward(ctx, *args)`` receives the inputs' arrays (NumPy on the CPU; tensors arrive as
their arrays, other arguments as given) and returns an array or a tuple of arrays;
``backward(ctx, *grads)`` receives one gradient array per output and returns one per input
(None where an input needs none; ``ctx.needs_input_grad[i]`` is truthy exactly where input i
needs one). ``Function.apply`` wraps the outputs in Tensors and, when
grad mode is on and an input requires grad, records the graph.

What ``ctx.save_for_backward`` keeps is checked when backward reads it: if an input or output
it came from was modified in place since (its version counter moved), backward fails instead
of silently using the new values. Tensors reach that check only as positional arguments of
``apply``; an array a forward keeps on ``ctx`` otherwise (a bound, an index, a target) it keeps
as ``owned`` makes it.
"""

from __future__ import annotations

import copy

from .. import backend
from .engine import Node, is_grad_enabled


class Variable:
    """What autograd needs of a tensor: its array, whether it requires grad, its gradient, the
    node that made it (and which of that node's outputs it is) and its version counter (a
    one-element list views share). ``ember.Tensor`` is the user-facing subclass; its ``_wrap``
    makes the tensors ``Function.apply`` returns."""

    __slots__ = ("_data", "requires_grad", "grad", "_node", "_out_index", "_version", "__weakref__")


class Context:
    """What a forward leaves for its backward."""

    # Class-level defaults: creating a context per op call costs nothing until it is used.
    needs_input_grad = ()
    _tensors = ()  # the input tensors, then the outputs (when arrays were saved)
    _versions = ()
    _saved = ()
    output_specs = ()

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        for t, version in zip(self._tensors, self._versions):
            if t._version[0] != version and _shares(self._saved, t._data):
                raise RuntimeError("one of the tensors saved for backward was modified by an in-place operation "
                                   f"(its version is {t._version[0]}, it was {version} when saved)")
        return self._saved

    def release(self) -> None:
        self.__dict__.clear()  # the saved arrays and whatever else the forward kept


def owned(a):
    """``a`` as a forward keeps it on ``ctx`` outside ``save_for_backward``, where no version check
    sees it: an array (or a list) copied, so that a caller's later in-place change to it cannot
    move the gradient; anything else (a number, None, a slice) as it is."""
    if isinstance(a, list):
        return copy.deepcopy(a)
    return a.copy() if hasattr(a, "copy") and hasattr(a, "shape") else a


def _shares(saved, data) -> bool:
    """Whether a saved array is ``data`` or a view of the same memory (a reduction saves its
    kept-dims result and returns a view of it)."""
    owner = None
    for a in saved:
        if a is data:
            return True
        if hasattr(a, "base"):
            owner = _memory_owner(data) if owner is None else owner
            if _memory_owner(a) is owner:
                return True
    return False


def _memory_owner(a):
    """The array that owns a's memory (a itself unless a is a view of another array)."""
    base = getattr(a, "base", None)
    while base is not None and hasattr(base, "base") and hasattr(base, "shape"):
        a, base = base, base.base
    return a


class Function:
    """Subclass with static ``forward(ctx, ...)`` and ``backward(ctx, *grads)``; call ``apply``.

    A Function whose outputs may be views of its first input sets ``view = True``: an output
    that shares that input's memory then shares its version counter too, so an in-place
    change through the view is seen by every backward that saved the base, and the other
    way round (as PyTorch's views share their base's version)."""

    view = False

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        # The hot path of every op: one pass over the arguments, nothing built that the
        # forward alone does not need unless the graph is recorded.
        arrays = []
        record = False
        first = None  # the first tensor argument: its array type is the op's device
        for a in args:
            if isinstance(a, Variable):
                arrays.append(a._data)
                record = record or a.requires_grad
                if first is None:
                    first = a
                elif type(a._data) is not type(first._data):
                    _check_same_device(cls, first, a)
            else:
                arrays.append(a)
        if first is None:
            raise TypeError(f"{_op_name(cls)}: expected an ember Tensor among the inputs, got "
                            f"{', '.join(type(a).__name__ for a in args) or 'none'}")
        record = record and is_grad_enabled()
        ctx = Context()
        out = cls.forward(ctx, *arrays, **kwargs)
        wrap = first._wrap
        if type(out) is not tuple:
            result = wrap(out, record)
            if cls.view:
                _share_version(args[0], (result,))
            if record:
                _record(cls, ctx, args, (result,))
            return result
        results = tuple(wrap(o, record) for o in out)
        if cls.view:
            _share_version(args[0], results)
        if record:
            _record(cls, ctx, args, results)
        return results


def _op_name(cls) -> str:
    return getattr(cls, "grad_name", None) or cls.__name__.removesuffix("Fn")


def _check_same_device(cls, a, b) -> None:
    """Tensors of one op must live on one device (the message names both)."""
    da, db = backend.device_of(a._data), backend.device_of(b._data)
    if da is not db:
        raise RuntimeError(f"{_op_name(cls)}: expected all tensors on one device, but found tensors on '{da.name}' and "
                           f"'{db.name}'; move them with .to(device)")


def _share_version(base, results) -> None:
    """Outputs that are views of ``base``'s memory take its version counter."""
    owner = _memory_owner(base._data)
    for r in results:
        if _memory_owner(r._data) is owner:
            r._version = base._version


def _record(cls, ctx, args, results) -> None:
    """Attach a Node for this call to its outputs and, when the forward saved arrays, note the
    versions of the tensors they may come from (backward checks them)."""
    edges = []
    for a in args:
        if isinstance(a, Variable) and a.requires_grad:
            node = a._node
            data = a._data
            edges.append((a, 0, data.shape, data.dtype) if node is None else
                         (node, a._out_index, data.shape, data.dtype))
        else:
            edges.append(None)
    node = Node(cls, ctx, edges, len(results))
    for i, r in enumerate(results):
        r._node, r._out_index = node, i
    ctx.needs_input_grad = edges  # truthy exactly where an input needs a gradient
    if ctx._saved:
        tensors = [a for a in args if isinstance(a, Variable)]
        tensors.extend(results)
        ctx._tensors = tensors
        ctx._versions = [t._version[0] for t in tensors]
    if len(results) > 1:  # an output no path reaches gets a zero gradient of this shape
        ctx.output_specs = tuple((r._data.shape, r._data.dtype) for r in results)
