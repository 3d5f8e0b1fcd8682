"""The measurement harness: every timing Ember reports goes through ``measure``.

On a small, shared machine a single timing says little: another library's worker threads may
still be spinning from its last call (OpenBLAS's and OpenMP's do for ~0.1 s) and take the cores
the next call needs, and the machine's speed drifts. So the implementations of one case are
timed in rounds, each round visiting every implementation once, in an order that rotates from
round to round, after a pause; a round's figure for an implementation is the median of its
calls in that round. The result is the median over rounds with the quartiles as its spread, and
a speed-up is the median of the per-round ratios (two implementations measured side by side in
the same round see the same machine).

``clock`` and ``sleep`` are parameters so that the logic can be checked with a fake clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Timing:
    """Seconds per call of one implementation: ``rounds`` holds each round's median."""

    name: str
    rounds: list = field(default_factory=list)
    calls: int = 0

    @property
    def median(self) -> float:
        return float(np.median(self.rounds))

    @property
    def q25(self) -> float:
        return float(np.percentile(self.rounds, 25))

    @property
    def q75(self) -> float:
        return float(np.percentile(self.rounds, 75))

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (0.05: the middle half of the rounds lie
        within 5% of one another)."""
        return (self.q75 - self.q25) / self.median if self.median > 0 else 0.0


def sample_calls(fn, min_time, min_calls, max_calls, clock=time.perf_counter, sync=None) -> list:
    """Seconds of each of at least ``min_calls`` calls, until ``min_time`` has passed."""
    times = []
    start = clock()
    while len(times) < max_calls and (len(times) < min_calls or clock() - start < min_time):
        t0 = clock()
        fn()
        if sync is not None:
            sync()
        times.append(clock() - t0)
    return times


def measure(impls: dict, *, rounds: int = 5, min_time: float = 0.05, min_calls: int = 3, max_calls: int = 1000,
            settle: float = 0.2, warmup: int = 1, warmup_time: float = 0.0, long_call: float | None = None,
            long_rounds: int | None = None, clock: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], None] = time.sleep, sync: Callable[[], None] | None = None,
            progress: Callable[[str], None] | None = None) -> dict:
    """Time each of ``impls`` (name -> function of no arguments) and return name -> ``Timing``.

    Each function is first called ``warmup`` times and for at least ``warmup_time`` seconds (thread
    pools, packing buffers, the allocator settling on reusing memory rather than faulting it in);
    then ``rounds`` rounds, each visiting every function once, the order rotated by one from
    round to round, each visit ``settle`` seconds after the previous one ended, making one untimed
    call (the pause let the library's threads sleep; waking them is not the kernel's cost), then
    timing at least ``min_calls`` calls and ``min_time`` seconds (at most ``max_calls``).
    A function whose calls last ``long_call`` seconds or more (by its warm-up, then by its latest
    visit) is timed by one call per visit, without the untimed one: so long a call dwarfs the
    clock's resolution and a thread pool's wake-up, and repeating it would only cost time (a
    reference a hundred times slower than Ember at the size measured); with ``long_rounds``, such a
    function is visited in the first ``long_rounds`` rounds only (its rounds are then fewer than
    the others', and ``speedup`` pairs the rounds both have). ``sync`` runs after each call inside
    its timing (a GPU stream's synchronisation)."""
    if not impls:
        raise ValueError("measure: impls is empty")
    if rounds < 1 or min_calls < 1 or max_calls < min_calls:
        raise ValueError(f"measure: need rounds >= 1 and 1 <= min_calls <= max_calls, got rounds={rounds}, "
                         f"min_calls={min_calls}, max_calls={max_calls}")
    if long_call is not None and not long_call > 0:
        raise ValueError(f"measure: long_call must be positive seconds or None, got {long_call!r}")
    if long_rounds is not None and long_rounds < 1:
        raise ValueError(f"measure: long_rounds must be >= 1 or None, got {long_rounds!r}")
    names = list(impls)
    typical = {}  # seconds per call of each function, as last seen
    for name in names:
        start = clock()
        done = 0
        while done < warmup or clock() - start < warmup_time:
            impls[name]()
            done += 1
        if sync is not None:
            sync()
        typical[name] = (clock() - start) / done if done else 0.0
    timings = {name: Timing(name) for name in names}
    for r in range(rounds):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            long = long_call is not None and typical[name] >= long_call
            if long and long_rounds is not None and r >= long_rounds:
                continue
            if settle > 0:
                sleep(settle)
            if not long:
                impls[name]()  # untimed: wakes the library's thread pool after the pause
                if sync is not None:
                    sync()
            samples = sample_calls(impls[name], min_time, 1 if long else min_calls, max_calls, clock, sync)
            typical[name] = float(np.median(samples))
            timings[name].rounds.append(typical[name])
            timings[name].calls += len(samples)
        if progress is not None:
            progress(f"round {r + 1}/{rounds}")
    return timings


def speedup(timings: dict, base: str, other: str) -> tuple:
    """(median, first quartile, third quartile) over the rounds of other's time / base's time
    (the rounds both were timed in: each one's first): above 1, ``base`` is faster."""
    n = min(len(timings[other].rounds), len(timings[base].rounds))
    ratios = np.asarray(timings[other].rounds[:n]) / np.asarray(timings[base].rounds[:n])
    return float(np.median(ratios)), float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))
