"""Context managers used as decorators (``@ember.no_grad()``, ``@ember.autocast("bf16")``).

A decorated plain function runs each call inside a fresh context. A generator function runs
each of its steps inside one (so the mode holds while the generator's code runs, and not in the
caller's code between steps), and a coroutine function its whole body, awaits included; Ember's
modes live in the asyncio task's context, so the tasks that run while it waits keep their own.
"""

from __future__ import annotations

import functools
import inspect


def decorate(fn, enter):
    """``fn`` with its code run inside ``enter()``, a new context manager each time."""
    if not callable(fn):
        raise TypeError(f"a context manager decorates a function, got {type(fn).__name__}")
    if inspect.isasyncgenfunction(fn):
        raise TypeError(f"cannot decorate async generator {fn.__qualname__}: use the context manager inside it")
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            gen = fn(*args, **kwargs)
            try:
                with enter():
                    value = gen.send(None)
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        with enter():
                            gen.close()
                        raise
                    except BaseException as e:  # thrown in by the caller: into the wrapped generator
                        with enter():
                            value = gen.throw(e)
                    else:
                        with enter():
                            value = gen.send(sent)
            except StopIteration as stop:
                return stop.value

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
