"""The fuzzer's profiles and its worker process.

Profiles (the environment variable EMBER_FUZZ chooses):

- short (the default): a few dozen cases per function, part of every ``python -m pytest``.
  Under ``CI=true`` hypothesis's "ci" profile applies (derandomised: the same cases every run,
  no example database), so the strategies aim each draw at the edge cases directly.
- long (``EMBER_FUZZ=long``): thousands of random cases per function (EMBER_FUZZ_EXAMPLES,
  default 2000), no deadline, failures kept in hypothesis's database and replayed first.

EMBER_FUZZ_TIMEOUT (seconds, default 20) bounds one case; EMBER_FUZZ_SHRINK=0 reports a
failure without shrinking it (quicker when exploring a known crash or hang).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fuzz_harness  # noqa: E402
from fuzz_settings import LONG  # noqa: E402

_WORKER: fuzz_harness.Worker | None = None


@pytest.fixture(scope="session")
def worker():
    global _WORKER
    if _WORKER is None:
        _WORKER = fuzz_harness.Worker()
    yield _WORKER


def pytest_sessionfinish(session, exitstatus):
    if _WORKER is not None:
        _WORKER.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _WORKER is None or not _WORKER.stats:
        return
    tr = terminalreporter
    total = sum(s["cases"] for s in _WORKER.stats.values())
    secs = sum(s["seconds"] for s in _WORKER.stats.values())
    tr.section(f"ember fuzz ({'long' if LONG else 'short'} profile)")
    for op, s in sorted(_WORKER.stats.items()):
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
        tr.write_line(f"{op:36s} {s['cases']:6d} cases {s['seconds']:7.1f} s   {outcomes}")
    tr.write_line(f"{'total':36s} {total:6d} cases {secs:7.1f} s in the worker; "
                  f"{_WORKER.restarts} worker start(s)")
