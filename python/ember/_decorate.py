"""Context managers used as decorators (``@ember.no_grad()``, ``@ember.autocast("bf16")``), and
the per-context settings they set.

A decorated plain function runs each call inside the mode. A decorated generator runs in a
context of its own, copied from the caller's at its first step (as an asyncio task's is when it
is made): every step runs there, so the mode holds while the generator's code runs -- a ``with``
block inside it that spans a ``yield`` included -- and never in the caller's code between
steps. A coroutine function runs its whole body in the mode, awaits included; Ember's modes live
in the asyncio task's context, so the tasks that run while it waits keep their own. Async
generators are refused: use the context manager inside them.
"""

from __future__ import annotations

import contextvars
import functools
import inspect


class Setting:
    """A value held per context (each thread and asyncio task has its own), set for ``with``
    blocks. Each exit restores exactly what its own entry replaced (a ``ContextVar`` token), so
    blocks nest, and one mode object may be entered by several threads or tasks at once."""

    def __init__(self, name: str, default):
        self._value = contextvars.ContextVar(name, default=default)
        # The open entries of this context: (owner, token), the latest last.
        self._entries = contextvars.ContextVar(f"{name}_entries", default=())

    def get(self):
        return self._value.get()

    def enter(self, owner, value) -> None:
        """Set ``value`` until ``exit(owner)``."""
        self._entries.set(self._entries.get() + ((owner, self._value.set(value)),))

    def exit(self, owner) -> None:
        """Restore what ``owner``'s latest entry in this context replaced."""
        entries = self._entries.get()
        for i in range(len(entries) - 1, -1, -1):
            if entries[i][0] is owner:
                self._entries.set(entries[:i] + entries[i + 1:])
                self._value.reset(entries[i][1])
                return
        raise RuntimeError(f"{owner!r} is left in a thread, task or generator it was not entered in")


def decorate(fn, enter):
    """``fn`` with its code run inside ``enter()``, a new context manager each time."""
    if not callable(fn):
        raise TypeError(f"a context manager decorates a function, got {type(fn).__name__}")
    if inspect.isasyncgenfunction(fn):
        raise TypeError(f"cannot decorate async generator {fn.__qualname__}: use the context manager inside it")
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            context = contextvars.copy_context()  # the generator's own: its modes never reach the caller
            mode = enter()
            context.run(mode.__enter__)
            gen = fn(*args, **kwargs)
            try:
                value = context.run(gen.send, None)
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        context.run(gen.close)
                        raise
                    except BaseException as e:  # thrown in by the caller: into the wrapped generator
                        value = context.run(gen.throw, e)
                    else:
                        value = context.run(gen.send, sent)
            except StopIteration as stop:
                return stop.value
            finally:
                context.run(mode.__exit__, None, None, None)

        return generator
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args, **kwargs):
            with enter():
                return await fn(*args, **kwargs)

        return coroutine

    @functools.wraps(fn)
    def function(*args, **kwargs):
        with enter():
            return fn(*args, **kwargs)

    return function
