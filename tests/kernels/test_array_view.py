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
