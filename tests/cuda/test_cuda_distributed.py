"""Data-parallel training on a GPU: the NCCL channel (CuPy's binding) on a communicator of one,
and two ranks sharing this GPU (NCCL refuses two ranks on one device, so their gradients go
through the host) training the model one process trains."""

import sys
from pathlib import Path

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, cp

pytestmark = CUDA_MARKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the distributed tests' helpers
import test_distributed as td  # noqa: E402


def test_nccl_channel_sums_in_place_on_the_stream():
    from ember import backend
    from ember.distributed.channels import NcclChannel
    from ember.distributed.comm import World

    nccl = cp.cuda.nccl
    if not getattr(nccl, "available", False):
        pytest.skip("CuPy finds no NCCL library (pip install nvidia-nccl-cu13)")
    channel = NcclChannel(World(None, None, 30.0), backend.get("cuda"), nccl)
    for dtype in (np.float32, np.float64, np.int64):
        arr = cp.arange(1000, dtype=dtype)
        handle = channel.start(arr)
        channel.finish(arr, handle)
        assert np.array_equal(cp.asnumpy(arr), np.arange(1000, dtype=dtype))  # a sum over one rank
    with pytest.raises(TypeError, match="NCCL sums float32"):
        channel.start(cp.zeros(3, cp.bool_))


@td.needs_mpi
def test_two_ranks_on_one_gpu_train_as_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    td.worker(1, "fit", one, "--device", "cuda", "--samples", "120", "--epochs", "1")
    td.worker(2, "fit", two, "--device", "cuda", "--samples", "120", "--epochs", "1")
    (reference,), _ = td.load(one, 1)
    weights, logs = td.load(two, 2)
    assert logs[0]["checks"] == logs[1]["checks"] == 3
    for k, v in reference.items():
        assert np.array_equal(weights[0][k], weights[1][k]), k
        np.testing.assert_allclose(weights[0][k], v, rtol=0, atol=1e-5 * np.abs(v).max(), err_msg=k)
