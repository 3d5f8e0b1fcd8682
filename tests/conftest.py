"""Fixtures shared by the whole suite.

``isa``: every instruction set this CPU supports, forced for the duration of a test.
``rng``: a NumPy generator with a fresh seed per test (printed in the header and reproducible
with EMBER_TEST_SEED), so tests never run on the same data twice, let alone on zeros.
``device``: each device a test runs on -- ``cpu``, ``strict`` (host arrays that refuse NumPy,
see strict_device.py: any NumPy call above the kernel doors fails there) and ``cuda`` where a GPU
is usable -- made the default device for the test's tensors and layers.
"""

import os
import zlib

import numpy as np
import pytest

import ember
import strict_device
from ember import backend

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


@pytest.fixture(params=["cpu", "strict", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    name = request.param
    if name == "strict":
        strict_device.register()
    elif name == "cuda" and backend.cuda_status() != "available":
        pytest.skip(f"no CUDA device: {backend.cuda_status()}")
    previous = ember.get_default_device()
    ember.set_default_device(name)
    try:
        yield name
    finally:
        ember.set_default_device(previous)
