"""Every benchmark record says under which precision policy and ISA level Ember ran."""

import pytest

import ember


@pytest.fixture(autouse=True)
def _record_precision_and_isa(request):
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is not None:  # a benchmark that did not say records the policy in force (fp32 by default)
        bench.extra_info.setdefault("precision", ember.precision.current().name)
        bench.extra_info.setdefault("isa", ember.get_isa())
