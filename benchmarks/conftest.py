"""Every benchmark record says under which precision policy and ISA level Ember ran; the files
that time the catalogue of ``ember.bench`` get its cases as the ``item`` parameter."""

import pytest

import ember
from helpers import case_id, catalogue_cases


def pytest_generate_tests(metafunc):
    """A module's ``CATALOGUE`` maps each of its benchmark functions to the catalogue kernels it times."""
    kernels = getattr(metafunc.module, "CATALOGUE", {}).get(metafunc.function.__name__)
    if kernels and "item" in metafunc.fixturenames:
        metafunc.parametrize("item", catalogue_cases(metafunc.config, *kernels), ids=case_id)


@pytest.fixture(autouse=True)
def _record_precision_and_isa(request):
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is not None:  # a benchmark that did not say records the policy in force (fp32 by default)
        bench.extra_info.setdefault("precision", ember.precision.current().name)
        bench.extra_info.setdefault("isa", ember.get_isa())
