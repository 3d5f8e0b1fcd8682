"""Grad mode and the precision policy as context managers and decorators: each block restores
what it replaced, decorated generators keep their modes (and the blocks open inside them) to
their own steps, coroutines, tasks and threads each keep theirs."""

from __future__ import annotations

import asyncio
import threading

import pytest

import ember
from ember import precision


def _policy():
    return precision.current().name


def _recording():
    return (ember.ones(2, requires_grad=True) * 2).requires_grad


def test_a_block_inside_a_decorated_generator_spans_its_yields_without_reaching_the_caller():
    @ember.autocast("bf16")
    def steps():
        yield _policy()
        with ember.autocast(enabled=False):  # the opt-out holds across the yield
            yield _policy()
            yield _policy()
        yield _policy()

    gen = steps()
    seen = []
    for value in gen:
        seen.append((value, _policy()))
    assert seen == [("bf16", "fp32"), ("fp32", "fp32"), ("fp32", "fp32"), ("bf16", "fp32")]

    @ember.no_grad()
    def grads():
        yield _recording()
        with ember.enable_grad():
            yield _recording()
            yield _recording()
        yield _recording()

    seen = []
    with ember.no_grad():  # the caller's own mode is its own, before and after each step
        for value in grads():
            seen.append((value, _recording()))
    assert seen == [(False, False), (True, False), (True, False), (False, False)]
    assert _recording() and _policy() == "fp32"


def test_interleaved_decorated_generators_and_caller_blocks_each_keep_their_own():
    @ember.autocast("bf16")
    def outer():
        with ember.autocast(enabled=False):
            yield _policy()
            yield _policy()

    @ember.autocast("bf16")
    def plain():
        yield _policy()
        yield _policy()

    a, b = outer(), plain()
    with ember.autocast("bf16"):
        assert next(a) == "fp32" and _policy() == "bf16"
        with ember.autocast(enabled=False):
            assert next(b) == "bf16" and _policy() == "fp32"
            assert next(a) == "fp32" and next(b) == "bf16" and _policy() == "fp32"
        assert _policy() == "bf16"
    assert _policy() == "fp32"


def test_a_decorated_generator_is_sent_thrown_into_and_closed_in_its_mode():
    log = []

    @ember.no_grad()
    def worker():
        try:
            while True:
                try:
                    got = yield _recording()
                    log.append(("sent", got, _recording()))
                except KeyError:
                    log.append(("thrown", _recording()))
        finally:
            log.append(("closed", _recording()))

    gen = worker()
    assert next(gen) is False
    assert gen.send("x") is False
    assert gen.throw(KeyError("k")) is False
    gen.close()
    assert log == [("sent", "x", False), ("thrown", False), ("closed", False)] and _recording()

    @ember.autocast("bf16")
    def returns():
        yield 1
        return "done"

    gen = returns()
    next(gen)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done" and _policy() == "fp32"


def test_nested_and_exception_exits_restore_exactly():
    shared = ember.no_grad()
    with shared:
        with ember.enable_grad():
            with shared:  # one object entered twice, nested
                assert not _recording()
            assert _recording()
        assert not _recording()
    assert _recording()
    with pytest.raises(KeyError):
        with ember.autocast("bf16"), ember.no_grad():
            raise KeyError("restored on the way out")
    assert _policy() == "fp32" and _recording()
    x = ember.ones(2, requires_grad=True)
    with ember.autocast("bf16"):
        (x * 3).sum().backward()  # the backward's own no-grad block, inside an autocast block
        assert _policy() == "bf16" and _recording()


def test_leaving_a_block_elsewhere_than_it_was_entered_is_an_error():
    block = ember.autocast("bf16")
    block.__enter__()
    errors = []

    def leave():
        try:
            block.__exit__(None, None, None)
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=leave)
    thread.start()
    thread.join()
    assert errors == ["autocast('bf16') is left in a thread, task or generator it was not entered in"]
    block.__exit__(None, None, None)
    assert _policy() == "fp32"


def test_coroutines_tasks_and_threads_keep_their_own_modes():
    @ember.autocast("bf16")
    async def inside(delay):
        with ember.autocast(enabled=False):
            await asyncio.sleep(delay)
            opted_out = _policy()
        return opted_out, _policy()

    async def other():
        await asyncio.sleep(0.005)  # runs while the decorated coroutines wait
        return _policy()

    async def main():
        return await asyncio.gather(inside(0.01), inside(0.02), other())

    assert asyncio.run(main()) == [("fp32", "bf16"), ("fp32", "bf16"), "fp32"] and _policy() == "fp32"

    quiet = ember.no_grad()
    entered, leave = threading.Barrier(2), threading.Barrier(2)
    seen = []

    @quiet
    def worker():
        entered.wait()  # both threads inside the one object's decorated function at once
        seen.append(_recording())
        leave.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [False, False] and _recording()


def test_async_generators_are_refused():
    async def agen():
        yield 1

    with pytest.raises(TypeError, match="cannot decorate async generator .*agen: use the context manager inside it"):
        ember.autocast("bf16")(agen)
    with pytest.raises(TypeError, match="cannot decorate async generator"):
        ember.no_grad()(agen)
