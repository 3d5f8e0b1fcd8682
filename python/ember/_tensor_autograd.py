"""Tensor's part in autograd, as PyTorch's: ``requires_grad`` and ``grad`` (checked when set),
``backward``, ``detach``, ``retain_grad`` and the gradient hooks.

A hook registered on a tensor (``register_hook``) sees the whole gradient that reaches it: on a
leaf before it is summed into ``.grad``, on a tensor an op made before that op's backward runs
(its node's Function is wrapped, once, in one that runs the hooks first), whenever the tensor
was used. ``retain_grad()`` keeps a non-leaf's gradient in its ``.grad`` the same way, after its
hooks, as in PyTorch.
"""

from __future__ import annotations

import threading
import weakref

from .autograd import engine
from .autograd.function import Variable

_set_requires_grad = Variable.requires_grad.__set__
_set_grad = Variable.grad.__set__
_accumulating = threading.Lock()  # gradients summed into leaves, one at a time
_leaf_hooks: dict = {}  # id(leaf) -> the hooks register_hook put on it (an entry goes with its tensor)


class HookHandle:
    """What ``register_hook`` returns: ``remove()`` unregisters the hook (a second call does
    nothing)."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _run_hooks(hooks, g, wrap):
    """``g`` through each hook in turn: a hook returns None (``g`` unchanged) or the gradient to
    use instead, a tensor of ``g``'s shape."""
    for hook in list(hooks):
        out = hook(wrap(g))
        if out is not None:
            if not isinstance(out, Variable) or out._data.shape != g.shape:
                raise RuntimeError(f"hook {getattr(hook, '__name__', hook)!r} returned "
                                   f"{type(out).__name__} {getattr(out, 'shape', '')}: a hook returns None or a "
                                   f"tensor of the gradient's shape {tuple(g.shape)}")
            g = out._data
    return g


def _with_tensor_hooks(function, wrap):
    """``function`` (an op's Function) with a backward that first runs the hooks of its outputs'
    tensors (on gradients ``wrap`` makes tensors of) and keeps the gradients of those that retain
    theirs."""

    class Hooked(function):
        grad_name = getattr(function, "grad_name", None) or function.__name__
        tensor_hooks: dict = {}  # output index -> hooks
        retained: dict = {}  # output index -> weak reference to the tensor keeping its gradient

        @staticmethod
        def backward(ctx, *grads):
            grads = list(grads)
            for i, hooks in Hooked.tensor_hooks.items():
                grads[i] = _run_hooks(hooks, grads[i], wrap)
            for i, ref in Hooked.retained.items():
                t = ref()
                if t is not None:
                    t._accumulate(grads[i])
            return function.backward(ctx, *grads)

    return Hooked


class AutogradMixin:
    """The autograd side of ``ember.Tensor`` (see the module's notes)."""

    __slots__ = ()

    def _set_requires_grad(self, value) -> None:
        if self._node is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables" +
                               ("" if value else "; for a computed tensor no gradient flows through, use "
                                                 "tensor.detach()"))
        if value and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        _set_requires_grad(self, bool(value))

    requires_grad = property(Variable.requires_grad.__get__, _set_requires_grad,
                             doc="Whether backward computes a gradient for this tensor; set only on a leaf "
                                 "(a tensor no op made), and True only for a floating dtype.")

    def _set_grad(self, grad) -> None:
        if grad is not None:
            if not isinstance(grad, Variable):
                raise TypeError(f"assigned grad expected to be a Tensor or None, got {type(grad).__name__}")
            if grad is self:
                raise RuntimeError("a tensor cannot be its own grad")
            for what, want, got in (("size", self.shape, grad.shape), ("dtype", self.dtype, grad.dtype),
                                    ("device", self.device, grad.device)):
                if got != want:
                    raise RuntimeError(f"assigned grad has data of a different {what}: {got} for a tensor of {want}")
        _set_grad(self, grad)

    grad = property(Variable.grad.__get__, _set_grad,
                    doc="The gradient backward accumulated (None before any); what is assigned must be None or a "
                        "tensor of this tensor's shape, dtype and device.")

    def __setstate__(self, state) -> None:
        """Unpickling and copying: each slot set as it was saved, past the checks of
        ``requires_grad`` and ``grad`` (they held when it was saved)."""
        for name, value in state[1].items():
            getattr(Variable, name).__set__(self, value)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def backward(self, gradient=None, retain_graph=False) -> None:
        """Accumulate the gradient of this tensor with respect to every leaf that requires grad
        into the leaf's ``.grad``. ``gradient`` is required unless the tensor has one element.
        The graph's saved values are freed afterwards unless ``retain_graph``."""
        engine.backward(self, gradient._data if isinstance(gradient, Variable) else gradient, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` in every backward once this leaf's ``.grad`` holds all that the
        backward sends it (PyTorch's hook of that name); returns a handle whose ``remove()``
        unregisters it."""
        return engine.register_post_accumulate_grad_hook(self, hook)

    def register_hook(self, hook) -> HookHandle:
        """Call ``hook(grad)`` with the gradient that reaches this tensor in each backward; a
        tensor it returns replaces that gradient (for ``.grad`` on a leaf, for the ops before it
        otherwise). Returns a handle whose ``remove()`` unregisters it."""
        if not callable(hook):
            raise TypeError(f"register_hook: hook must be callable, got {type(hook).__name__}")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._node is None:
            key = id(self)
            if key not in _leaf_hooks:
                _leaf_hooks[key] = []
                weakref.finalize(self, _leaf_hooks.pop, key, None)
            hooks = _leaf_hooks[key]
        else:
            hooks = self._hooked_node().tensor_hooks.setdefault(self._out_index, [])
        hooks.append(hook)
        return HookHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep this tensor's gradient in ``.grad`` after backward although an op made it
        (accumulated over backward passes, as a leaf's); a leaf keeps it anyway."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that has requires_grad=False")
        if self._node is not None:
            self._hooked_node().retained[self._out_index] = weakref.ref(self)

    def _hooked_node(self):
        """The Function of the node that made this tensor, wrapped to run tensor hooks."""
        node = self._node
        if "tensor_hooks" not in vars(node.function):
            node.function = _with_tensor_hooks(node.function, self._wrap)
        return node.function

    def _accumulate(self, g, owned=False) -> None:
        # A backward may hand the same array to several inputs (an add's gradient flows to
        # both sides), so a leaf's .grad is its own copy unless the engine says nothing else
        # holds g: changing one leaf's gradient in place (clipping, a user's edit) must not
        # change another's. Locked: backward passes on several threads may reach one leaf.
        hooks = _leaf_hooks.get(id(self))
        if hooks:
            g, owned = _run_hooks(hooks, g, self._wrap), False
        with _accumulating:
            grad = self.grad
            if grad is None:
                if not (owned and g.dtype == self.dtype and g.flags.c_contiguous and
                        getattr(g.flags, "writeable", True)):
                    g = g.astype(self.dtype, copy=True)
                _set_grad(self, self._wrap(g))
            elif getattr(grad._data.flags, "writeable", True):  # in place, as PyTorch: a reference
                grad._data += g.astype(self.dtype, copy=False)  # to .grad sees the sum
                grad._bump()
            else:
                _set_grad(self, self._wrap(grad._data + g.astype(self.dtype, copy=False)))

    def detach(self):
        """The same storage, cut from the graph."""
        t = self._wrap(self._data)
        t._version = self._version
        return t

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` (of a leaf; a computed tensor already requires grad, and
        ``requires_grad_(False)`` on one is an error: use ``detach()``)."""
        if self._node is not None:
            if not requires_grad:
                raise RuntimeError("requires_grad_(False) on a tensor that is not a leaf: use detach()")
            return self
        self.requires_grad = requires_grad
        return self

