"""Reverse-mode autograd: the graph nodes, grad mode and the backward pass.

Every differentiable op records a :class:`Node` (its Function, the context it saved and its
inputs) on the tensors it returns. Nodes are numbered as they are created, so a node's number
is larger than that of every node it depends on: ``backward`` takes nodes from a heap in
decreasing number, so each runs after all its consumers have contributed (no recursion, so a
100 000-op chain is fine), accumulates into the leaves' ``.grad`` and, unless ``retain_graph``,
frees what each node saved as soon as it has run.

Grad mode is per thread (and per asyncio task), so tools that embed Ember can run inference on one thread while
another trains.

Two hooks serve code that acts on gradients while the backward runs (data-parallel training
starts sending a layer's gradients while earlier layers are still differentiated):
``register_post_accumulate_grad_hook(leaf, hook)`` calls ``hook(leaf)`` once per backward, when
the last gradient that backward sends to the leaf has been summed into its ``.grad``; and
``queue_callback(fn)``, called during a backward, runs ``fn()`` once that backward has finished;
and every function in ``progress_hooks`` is called after each node's backward (an MPI library
moves a non-blocking transfer on only while it is called).
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import itertools
import sys
import threading
import time
import weakref

from .. import backend
from .._decorate import Setting, decorate


# Grad mode lives in the context: each thread, and each asyncio task, has its own (on at start).
# What each open mode block replaced lives there too, so one mode object may be entered by several
# threads or tasks at once.
_enabled = Setting("ember_grad_enabled", True)


def is_grad_enabled() -> bool:
    """Whether ops record the graph here (in this thread, or asyncio task)."""
    return _enabled.get()


def _push_mode(enabled: bool) -> None:
    """Grad mode ``enabled`` until the matching ``_pop_mode()`` (a block without a mode object)."""
    _enabled.enter(_push_mode, enabled)


def _pop_mode() -> None:
    _enabled.exit(_push_mode)


class _GradMode:
    """Sets grad mode for a ``with`` block, or for every call of a decorated function."""

    enabled = True

    def __enter__(self):
        _enabled.enter(self, self.enabled)

    def __exit__(self, *exc):
        _enabled.exit(self)
        return False

    def __call__(self, fn):
        return decorate(fn, lambda: self)


class _NoArgumentMode(_GradMode):
    """A mode that takes no argument, so it decorates with or without parentheses."""

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        return self if fn is None else self(fn)


class no_grad(_NoArgumentMode):  # noqa: N801 (PyTorch's name)
    """Ops inside record no graph: ``with ember.no_grad():``, ``@ember.no_grad()`` or
    ``@ember.no_grad``."""

    enabled = False


class inference_mode(_GradMode):  # noqa: N801 (PyTorch's name)
    """PyTorch's ``inference_mode``: :class:`no_grad` (``mode=False``: grad mode on), as a
    ``with`` block or a decorator (with or without parentheses)."""

    def __new__(cls, mode=True):
        if callable(mode):  # @inference_mode, bare
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise TypeError(f"inference_mode: mode must be True or False, got {mode!r}")
        self.enabled = not mode


class enable_grad(_NoArgumentMode):  # noqa: N801 (PyTorch's name)
    """Ops inside record the graph again, even within :class:`no_grad`."""

    enabled = True


_sequence = itertools.count()  # creation order of nodes (next() is atomic under the GIL)
# While a profiler listens (``timed_backward``): called with (node, seconds) after each node's backward.
_backward_timer = None


def next_sequence() -> int:
    """A number above every node made so far and below every node made after: a profiler tells
    which nodes an interval of the forward made by the numbers before and after it."""
    return next(_sequence)


@contextlib.contextmanager
def timed_backward(callback):
    """While inside, ``callback(node, seconds)`` runs after each node's backward (one listener at
    a time; nested or concurrent use is an error)."""
    global _backward_timer
    if _backward_timer is not None:
        raise RuntimeError("timed_backward: another profiler is already timing the backward")
    _backward_timer = callback
    try:
        yield
    finally:
        _backward_timer = None


# id(leaf) -> the hooks registered on that leaf (an entry goes when its tensor is collected).
_leaf_hooks: dict = {}
# Called with no arguments after every node's backward, by whoever runs backward.
progress_hooks: list = []


class _Callbacks(threading.local):
    queue = None  # during a backward on this thread: what queue_callback added, run at its end


_callbacks = _Callbacks()


class RemovableHandle:
    """What registering a hook returns: ``remove()`` unregisters it (a second call does nothing)."""

    def __init__(self, key, hook):
        self._key, self._hook = key, hook

    def remove(self) -> None:
        hooks = _leaf_hooks.get(self._key)
        if hooks is not None and self._hook in hooks:
            hooks.remove(self._hook)
            if not hooks:
                del _leaf_hooks[self._key]


def register_post_accumulate_grad_hook(leaf, hook) -> RemovableHandle:
    """Call ``hook(leaf)`` in every backward, once the last gradient that backward sends to
    ``leaf`` (a tensor that requires grad and was made by no op) is in ``leaf.grad``."""
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got {type(hook).__name__}")
    if leaf._node is not None or not leaf.requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that requires grad takes this hook")
    key = id(leaf)
    if key not in _leaf_hooks:
        _leaf_hooks[key] = []
        weakref.finalize(leaf, _leaf_hooks.pop, key, None)
    _leaf_hooks[key].append(hook)
    return RemovableHandle(key, hook)


def queue_callback(fn) -> None:
    """Run ``fn()`` when the backward now running on this thread has finished (after every
    gradient is accumulated; not at all if the backward fails)."""
    if _callbacks.queue is None:
        raise RuntimeError("queue_callback: no backward is running on this thread")
    _callbacks.queue.append(fn)


def _hooked_edges(start) -> dict:
    """For each hooked leaf the graph below ``start`` reaches: how many edges lead to it (the
    gradients it will receive before its hooks may run)."""
    counts, seen, stack = {}, {id(start)}, [start]
    while stack:
        for edge in stack.pop().edges:
            if edge is None:
                continue
            target = edge[0]
            if type(target) is Node:
                if id(target) not in seen:
                    seen.add(id(target))
                    stack.append(target)
            elif id(target) in _leaf_hooks:
                counts[id(target)] = counts.get(id(target), 0) + 1
    return counts


def _leaf_reached(leaf, pending) -> None:
    """One of the gradients ``leaf`` waits for has arrived (or is known to be None): run its
    hooks when it was the last."""
    key = id(leaf)
    left = pending.get(key)
    if left is None:
        return
    if left > 1:
        pending[key] = left - 1
        return
    del pending[key]
    for hook in list(_leaf_hooks.get(key, ())):
        hook(leaf)


class Node:
    """One recorded op: its Function, the context its forward saved, and one edge per input --
    None where the input needs no gradient, else (the node that made it and which of its
    outputs it is, or the leaf tensor itself; the input's shape and dtype). Edges hold no intermediate
    tensors, so once backward has freed the saved values nothing of the graph's data remains."""

    __slots__ = ("function", "ctx", "edges", "n_outputs", "freed", "seq")

    def __init__(self, function, ctx, edges, n_outputs):
        self.seq = next(_sequence)
        self.function = function
        self.ctx = ctx
        self.edges = edges
        self.n_outputs = n_outputs
        self.freed = False

    def name(self) -> str:
        fn = self.function
        name = getattr(fn, "grad_name", None) or fn.__name__
        return f"{name[:-2] if name.endswith('Fn') else name}Backward"


# What owns the memory of ember._C.empty's large arrays (an array's base when it is no view).
_CAPSULE = type(datetime.datetime_CAPI)
# While _measure_loop_refs runs: where _sole_holder reports the count it read.
_counting = None


def _sole_holder(a) -> bool:
    """Whether the backward loop holds the only reference to array a and to its memory, so a
    leaf may keep it as its .grad without a copy (as PyTorch steals a gradient nobody else
    holds). A view, an array something else references (a saved value, another input's
    gradient, an incoming gradient passed through) or memory other arrays share is copied."""
    if _counting is not None:
        _counting.append(sys.getrefcount(a))
        return False
    base = a.base  # views of an array reference it, so its count covers them
    return (base is None or type(base) is _CAPSULE) and 0 < _LOOP_REFS and sys.getrefcount(a) <= _LOOP_REFS


def _propagate(heap, sums, xp, retain_graph, pending=None) -> None:
    """Run the backward of every node on the heap, latest first, sending each input's
    gradient into its leaf's .grad or summing it into the node that made it (queued when
    first reached). ``sums`` maps each queued node to the gradients of its outputs summed so
    far: this backward's own, so that several threads may run backward through one graph.
    ``pending`` (from ``_hooked_edges``) counts down the gradients hooked leaves still wait for."""
    while heap:
        node = heapq.heappop(heap)[1]
        grads = sums.pop(node)
        if node.freed:
            raise RuntimeError(f"backward through {node.name()} a second time: its saved values were freed "
                               "after the first backward; pass retain_graph=True to keep them")
        if len(grads) > 1 and any(gr is None for gr in grads):  # outputs no path from the root reached
            grads = [xp.zeros(s, dtype=d) if gr is None else gr
                     for gr, (s, d) in zip(grads, node.ctx.output_specs)]
        if _backward_timer is None:
            in_grads = node.function.backward(node.ctx, *grads)
        else:
            start = time.perf_counter()
            in_grads = node.function.backward(node.ctx, *grads)
            _backward_timer(node, time.perf_counter() - start)
        if type(in_grads) is not tuple:
            in_grads = (in_grads,)
        if len(in_grads) != len(node.edges) and (any(node.edges[len(in_grads):]) or
                                                  any(gi is not None for gi in in_grads[len(node.edges):])):
            raise RuntimeError(f"{node.name()} returned {len(in_grads)} gradients for its {len(node.edges)} inputs "
                               "(None for an input that needs none; trailing ones that need none may be left out)")
        if progress_hooks:
            for poll in progress_hooks:
                poll()
        for edge, gi in zip(node.edges, in_grads):
            if edge is None:
                continue
            if gi is None:
                if pending and type(edge[0]) is not Node:
                    _leaf_reached(edge[0], pending)
                continue
            target, index, shape, dtype = edge
            if gi.shape != shape:
                raise RuntimeError(f"{node.name()} returned a gradient of shape {gi.shape} for an input of "
                                   f"shape {shape}")
            if gi.dtype != dtype:  # a float32 input's gradient is float32 even after a float64 op (PyTorch's rule)
                gi = gi.astype(dtype)
            if type(target) is not Node:  # a leaf tensor
                target._accumulate(gi, _sole_holder(gi))
                if pending:
                    _leaf_reached(target, pending)
                continue
            slot = sums.get(target)
            if slot is None:
                slot = sums[target] = [None] * target.n_outputs
                heapq.heappush(heap, (-target.seq, target))
            slot[index] = gi if slot[index] is None else backend.add(slot[index], gi)
        if not retain_graph:
            node.ctx.release()
            node.freed = True


def _measure_loop_refs() -> int:
    """The references _sole_holder counts on a gradient only the backward loop holds: one
    node whose backward returns a fresh array, propagated to a stand-in leaf. (The number
    depends on the interpreter: how its loops, calls and argument passing hold references.)
    0 where the interpreter counts no references: then every gradient is copied."""
    global _counting

    class Fresh:
        @staticmethod
        def backward(ctx, g):
            return backend.CPU.xp.empty(1)

    class Ctx:
        def release(self):
            pass

    class Leaf:
        def _accumulate(self, g, sole):
            pass

    if not hasattr(sys, "getrefcount"):
        return 0
    node = Node(Fresh, Ctx(), ((Leaf(), 0, (1,), backend.CPU.xp.dtype("float64")),), 1)
    _counting = []
    try:
        _propagate([(-node.seq, node)], {node: [None]}, backend.CPU.xp, False)
        return _counting[0]
    finally:
        _counting = None


_LOOP_REFS = _measure_loop_refs()


def backward(root, gradient=None, retain_graph=False) -> None:
    """Accumulate d root / d leaf into every leaf's ``.grad`` (see ``Tensor.backward``);
    ``gradient`` is an array (moved to the root's device) or None for a one-element root."""
    xp = backend.namespace(root._data)
    if not root.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no grad_fn "
                           "(no input of the ops that made it requires grad)")
    if gradient is None:
        if root.size != 1:
            raise RuntimeError(f"backward: a gradient must be given for a non-scalar output (shape {root.shape}); "
                               "grad can be implicitly created only for scalar outputs")
        g = xp.ones(root.shape, dtype=root.dtype)
    else:
        g = backend.device_of(root._data).asarray(gradient, root.dtype)
        if g.shape != root.shape:
            raise RuntimeError(f"backward: gradient has shape {g.shape}, the tensor has shape {root.shape}")
    outer = _callbacks.queue is None
    if outer:
        _callbacks.queue = []
    _push_mode(False)  # hooks and callbacks run in no-grad mode (an optimizer step in a hook), as PyTorch's
    try:
        if root._node is None:  # a leaf
            root._accumulate(g)
            if id(root) in _leaf_hooks:
                _leaf_reached(root, {id(root): 1})
        else:
            start = root._node
            sums = {start: [None] * start.n_outputs}
            sums[start][root._out_index] = g
            heap = [(-start.seq, start)]  # numbers are unique, so nodes themselves are never compared
            _propagate(heap, sums, xp, retain_graph, _hooked_edges(start) if _leaf_hooks else None)
        if outer:
            while _callbacks.queue:  # a callback may queue another
                _callbacks.queue.pop(0)()
    finally:
        _pop_mode()
        if outer:
            _callbacks.queue = None
