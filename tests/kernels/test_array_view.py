"""The validator every ember._C binding reads its arrays with: NumPy arrays, other objects with
the buffer protocol, and __cuda_array_interface__ (refused here, naming the device)."""

import array

import numpy as np
import pytest

from ember import _C


class DeviceArray:
    """What CuPy (or PyTorch, Numba) shows of a CUDA array: no buffer, a CUDA array interface."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x7F0000000000, False),
                                         "strides": None, "version": 3}


def test_cuda_arrays_are_refused_by_name():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="relu_fwd: out is a CUDA array; ember._C kernels take host"):
        _C.relu_fwd(x, DeviceArray((2, 3)))
    with pytest.raises(TypeError, match="gemm: b is a CUDA array"):
        _C.gemm(x, DeviceArray((3, 2)), np.empty((2, 2), np.float32), 1.0, 0.0, False, False, None, False)


def test_other_buffer_protocol_objects_are_read_in_place():
    x = array.array("f", [-1.0, 2.0, -3.0, 4.0])
    out = array.array("f", [0.0] * 4)
    _C.relu_fwd(x, out)
    assert list(out) == [0.0, 2.0, 0.0, 4.0]
    _C.relu_fwd(memoryview(x), memoryview(x))  # in place, through memoryviews
    assert list(x) == [0.0, 2.0, 0.0, 4.0]


def test_read_only_buffers_and_foreign_dtypes_are_named():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="out is read-only"):
        _C.relu_fwd(x, memoryview(x.tobytes()).cast("f"))
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got >f4"):
        _C.relu_fwd(x.astype(">f4"), x)
    with pytest.raises(TypeError, match="a must have dtype float32, got int8"):
        _C.gemm(array.array("b", [1, 2]), x.reshape(2, 2), np.empty((1, 2), np.float32), 1.0, 0.0, False, False,
                None, False)


def test_strides_that_are_not_whole_elements_are_refused():
    raw = np.zeros(41, np.uint8)
    odd = np.lib.stride_tricks.as_strided(raw[:40].view(np.float32), shape=(3, 3), strides=(13, 4))
    with pytest.raises(ValueError, match="strides that are not multiples of its item size"):
        _C.gemm(odd, np.ones((3, 3), np.float32), np.empty((3, 3), np.float32), 1.0, 0.0, False, False, None,
                False)


# ---------------------------------------------------------------- the same validator in ember._cuda
# ember._cuda reads its arrays with this validator too, adding where the memory lives. Empty
# arrays are never dereferenced, so these run without a GPU.


@pytest.fixture(scope="module")
def cuda_module():
    try:
        from ember import _cuda
    except ImportError as e:
        pytest.skip(f"ember._cuda was not built (no CUDA compiler at install time): {e}")
    return _cuda


def test_cuda_module_names_host_arrays_and_non_arrays(cuda_module):
    empty = DeviceArray((0,))
    with pytest.raises(TypeError, match=r"out is a host array \(numpy.ndarray\); ember._cuda kernels need device"):
        cuda_module.relu_fwd(empty, np.zeros(0, np.float32))
    with pytest.raises(TypeError, match="out must be a device array exposing __cuda_array_interface__ .* of float32 "
                                        "or float64, got object"):
        cuda_module.relu_fwd(empty, object())
    with pytest.raises(TypeError, match="input .* points to host memory; ember._cuda kernels need device memory"):
        cuda_module.relu_fwd(DeviceArray((4,)), DeviceArray((4,)))


def test_cuda_module_checks_dtypes_shapes_and_writability_as_the_cpu_one(cuda_module):
    f32 = DeviceArray((0,))
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got int64"):
        cuda_module.relu_fwd(DeviceArray((0,), "<i8"), f32)
    with pytest.raises(ValueError, match=r"out has shape \(0, 1\) but input has shape \(0,\)"):
        cuda_module.relu_fwd(f32, DeviceArray((0, 1)))
    read_only = DeviceArray((0,))
    read_only.__cuda_array_interface__["data"] = (0x7F0000000000, True)
    with pytest.raises(ValueError, match="out is read-only"):
        cuda_module.relu_fwd(f32, read_only)
    bf16 = DeviceArray((0, 4), "<u2")
    with pytest.raises(TypeError, match="a and b must both be float32 or both bf16, got uint16 and float32"):
        cuda_module.gemm(bf16, DeviceArray((4, 0)), DeviceArray((0, 0)))
    cuda_module.gemm(bf16, DeviceArray((4, 0), "<V2"), DeviceArray((0, 0)))  # both bf16 carriers: nothing to do
    with pytest.raises(TypeError, match="lacks shape, typestr or data"):
        broken = DeviceArray((0,))
        del broken.__cuda_array_interface__["typestr"]
        cuda_module.relu_fwd(f32, broken)


def test_cuda_optimizer_lists_are_read_as_the_cpu_ones(cuda_module):
    e = DeviceArray((0,))
    args = (1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match="steps has 2 counts but params has 1 arrays"):
        cuda_module.adam_step([e], [e], [e], [e], None, [1, 2], *args)
    with pytest.raises(ValueError, match=r"steps\[0\] must be >= 1, got 0"):
        cuda_module.adam_step([e], [e], [e], [e], None, [0], *args)
    with pytest.raises(TypeError, match="params must be a list of device arrays of float32, got .*DeviceArray"):
        cuda_module.sgd_step(e, [e], None, 0.1, 0.0, 0.0, 0.0, False, False, True)
    with pytest.raises(TypeError, match=r"params\[0\] is a host array"):
        cuda_module.sgd_step([np.zeros(0, np.float32)], [e], None, 0.1, 0.0, 0.0, 0.0, False, False, True)


def test_cuda_geometry_is_bounded_as_the_cpu_one(cuda_module):
    x, y = DeviceArray((0, 1, 4, 4)), DeviceArray((0, 1, 2, 2))
    with pytest.raises(ValueError, match="stride is 4611686018427387904, too large"):
        cuda_module.max_pool2d_fwd(x, y, None, 2, 2, 2**62, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="output plane 2x2 does not match input plane 4x4"):
        cuda_module.avg_pool2d_fwd(x, y, 2, 2, 1, 1, 0, 0, True)
    w = DeviceArray((0, 1, 3, 3))  # no output channels: nothing is read
    with pytest.raises(ValueError, match=r"groups=2 must divide the input channels \(1\)"):
        cuda_module.conv2d_fwd(x, w, None, DeviceArray((0, 0, 2, 2)), 1, 1, 0, 0, 1, 1, 2, False)
