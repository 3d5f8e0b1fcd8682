"""The module as a whole: device queries, the validator's messages, kernels on a non-default
CuPy stream, PyTorch CUDA tensors as inputs, and recovery: a failed call leaves nothing behind
that breaks the next one."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, ReadOnly, assert_close, assert_equal, cp, dev, host, poisoned, sync

pytestmark = CUDA_MARKS


def test_device_queries():
    assert K.device_count() >= 1
    info = K.device_info(0)
    assert info["multiprocessors"] > 0 and info["total_memory"] > 0
    assert K.runtime_version() > 0 and K.driver_version() > 0


def test_host_array_message():
    with pytest.raises(TypeError, match=r"out is a host array \(numpy.ndarray\); ember._cuda kernels need device "
                                        r"arrays \(CuPy\)"):
        K.relu_fwd(cp.zeros(3, cp.float32), np.zeros(3, np.float32))


def test_read_only_out_is_refused():
    x = cp.ones(4, cp.float32)
    with pytest.raises(ValueError, match="read-only"):
        K.relu_fwd(x, ReadOnly(cp.empty(4, cp.float32)))


def test_not_an_array():
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        K.relu_fwd(cp.ones(4, cp.float32), object())


def test_error_then_success(rng):
    x = dev(rng.standard_normal((64, 64)).astype(np.float32))
    for _ in range(3):
        with pytest.raises(ValueError):
            K.gemm(x, x, poisoned((64, 63)))
        with pytest.raises(ValueError):
            K.gemm(x, x, poisoned((64, 64)), variant="wgmma")  # float32: refused
    out = poisoned((64, 64))
    K.gemm(x, x, out)
    sync()
    xh = host(x).astype(np.float64)
    assert_close(host(out), xh @ xh, 1e-5, 1e-4, "gemm after failed calls")


def test_kernels_on_a_non_default_stream(rng):
    x_h = rng.standard_normal((512, 256)).astype(np.float32)
    b_h = rng.standard_normal((256, 128)).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        x = cp.asarray(x_h)
        b = cp.asarray(b_h)
        out = cp.full((512, 128), np.nan, dtype=cp.float32)
        K.gemm(x, b, out, 1.0, 0.0, False, False, None, True, "auto", s.ptr)
        y = cp.full(x.shape, np.nan, dtype=cp.float32)
        K.relu_fwd(x, y, s.ptr)
        K.relu_fwd(x, y, s)  # a stream object with .ptr works too
    s.synchronize()
    want = np.maximum(x_h.astype(np.float64) @ b_h, 0)
    assert_close(host(out), want, 1e-5, 1e-4, "gemm on a non-default stream")
    assert_equal(host(y), np.maximum(x_h, 0), "relu on a non-default stream")


def test_torch_cuda_tensors(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no GPU")
    x = torch.randn(1000, device="cuda")
    out = torch.full((1000,), float("nan"), device="cuda")
    K.relu_fwd(x, out, torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert torch.equal(out, torch.relu(x))
    with pytest.raises(TypeError, match="host array"):
        K.relu_fwd(x.cpu(), out)


def test_bad_stream_argument():
    x = cp.ones(4, cp.float32)
    with pytest.raises(TypeError, match="stream"):
        K.relu_fwd(x, x, "default")
