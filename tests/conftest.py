"""Fixtures shared by the whole suite.

``isa``: every instruction set this CPU supports, forced for the duration of a test.
``rng``: a NumPy generator with a fresh seed per test (printed in the header and reproducible
with EMBER_TEST_SEED), so tests never run on the same data twice, let alone on zeros.
"""

import os
import zlib

import numpy as np
import pytest

import ember

SESSION_SEED = int(os.environ.get("EMBER_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))


def pytest_report_header(config):
    return [
        f"ember {ember.__version__}: isa {ember.get_isa()} (available: {', '.join(ember.available_isas())}), "
        f"{ember.get_num_threads()} threads",
        f"EMBER_TEST_SEED={SESSION_SEED}",
    ]


@pytest.fixture(params=ember.available_isas())
def isa(request):
    previous = ember.get_isa()
    ember.set_isa(request.param)
    try:
        yield request.param
    finally:
        ember.set_isa(previous)


@pytest.fixture
def rng(request):
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture
def num_threads():
    """Restores the thread count a test changes."""
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)
