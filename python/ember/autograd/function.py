"""Function: one differentiable op, its forward and backward side by side.

``forward(ctx, *args)`` receives the inputs' arrays (NumPy on the CPU; tensors arrive as
their arrays, other arguments as given) and returns an array or a tuple of arrays;
``backward(ctx, *grads)`` receives one gradient array per output and returns one per input
(None where an input needs none). ``Function.apply`` wraps the outputs in Tensors and, when
grad mode is on and an input requires grad, records the graph.

What ``ctx.save_for_backward`` keeps is checked when backward reads it: if an input or output
it came from was modified in place since (its version counter moved), backward fails instead
of silently using the new values.
"""

from __future__ import annotations

from .engine import Node, is_grad_enabled


class Context:
    """What a forward leaves for its backward."""

    def __init__(self, tensors, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._tensors = tensors  # the inputs that are tensors, then (after forward) the outputs
        self._versions = None
        self._saved = ()
        self.output_specs = ()

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        for t, version in zip(self._tensors, self._versions):
            if t._version[0] != version and any(a is t._data for a in self._saved):
                raise RuntimeError("one of the tensors saved for backward was modified by an in-place operation "
                                   f"(its version is {t._version[0]}, it was {version} when saved)")
        return self._saved

    def release(self) -> None:
        self._saved = ()
        self._tensors = ()


class Function:
    """Subclass with static ``forward(ctx, ...)`` and ``backward(ctx, *grads)``; call ``apply``."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor

        tensors = [a for a in args if isinstance(a, Tensor)]
        record = is_grad_enabled() and any(t.requires_grad for t in tensors)
        ctx = Context(tensors, tuple(isinstance(a, Tensor) and a.requires_grad for a in args))
        out = cls.forward(ctx, *[a._data if isinstance(a, Tensor) else a for a in args], **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        results = tuple(Tensor._wrap(o, requires_grad=record) for o in outs)
        if record:
            edges = tuple(
                ((a._node, a._out_index, a.shape) if a._node is not None else (a, 0, a.shape))
                if isinstance(a, Tensor) and a.requires_grad else None
                for a in args
            )
            node = Node(cls, ctx, edges, len(results))
            for i, r in enumerate(results):
                r._node, r._out_index = node, i
            ctx._tensors = tensors + list(results)
            ctx._versions = [t._version[0] for t in ctx._tensors]
            ctx.output_specs = tuple((r.shape, r.dtype) for r in results)
        return results[0] if single else results
