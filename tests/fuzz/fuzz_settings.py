"""The fuzzer's profiles (see conftest.py for what they are)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

LONG = os.environ.get("EMBER_FUZZ", "short") == "long"
_base = settings()  # the active profile: hypothesis's "ci" one when CI is set
_phases = tuple(_base.phases)
if os.environ.get("EMBER_FUZZ_SHRINK", "1") == "0":
    _phases = tuple(p for p in _phases if p not in (Phase.shrink, Phase.explain))

if LONG:
    _examples = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "2000"))
    FUZZ = settings(_base, max_examples=_examples, deadline=None, phases=_phases,
                    suppress_health_check=list(HealthCheck), derandomize=False)
else:
    FUZZ = settings(_base, deadline=None, phases=_phases, suppress_health_check=list(HealthCheck))


# A passing case costs about 3-10 ms (drawing it and running it), so the short profile's
# ~6 000 cases add well under a minute to the suite on 2 cores (35 s measured).
SHORT_SCALE = 3


def examples(short: int):
    """The settings of one fuzz test: SHORT_SCALE * `short` cases in the short profile, the long
    profile's count otherwise."""
    return FUZZ if LONG else settings(FUZZ, max_examples=SHORT_SCALE * short)
