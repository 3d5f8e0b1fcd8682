"""GPU tests: a kernel that faults (an illegal address, a trap) leaves this process's CUDA
context unusable, and every later test in it would fail for that reason alone. After each test
the device is synchronised; if that raises, the process leaves: under pytest-xdist the worker
is replaced and the other tests go on in a fresh context, so one broken kernel is reported
once instead of hiding the rest."""

import os
import sys

import pytest

from cuda_helpers import SKIP_REASON, cp


@pytest.fixture(autouse=True)
def _cuda_context_health(request):
    yield
    if SKIP_REASON is not None:
        return
    try:
        cp.cuda.Device().synchronize()
    except Exception as exc:
        msg = f"CUDA context lost after {request.node.nodeid}: {type(exc).__name__}: {exc}"
        print("\n" + msg, file=sys.stderr, flush=True)
        if os.environ.get("PYTEST_XDIST_WORKER"):
            os._exit(3)  # xdist starts a new worker for the remaining tests
        pytest.exit(msg, returncode=3)
