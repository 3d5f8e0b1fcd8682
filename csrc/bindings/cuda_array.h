// What ember._cuda's bindings add to the one array validator (array_view.h):
// that a device array's memory is on the current CUDA device, the bf16
// carriers, and the `stream` argument.
//
// A device array is anything exposing __cuda_array_interface__ (v2 or v3):
// CuPy arrays, PyTorch CUDA tensors, Numba device arrays. array_view reads it
// and runs the checks every binding shares; device_array() adds where the
// memory lives (host memory, another device, managed memory). The interface's
// optional "stream" entry is not waited on: kernels run on the `stream`
// argument, and ordering work on other streams is the caller's business, as
// with any CUDA library call.
//
// Compiled by the host compiler: no CUDA headers here.
#pragma once

#include <pybind11/pybind11.h>

#include "bindings/array_view.h"
#include "core/cuda_device.h"

namespace ember::cuda_bind {

namespace py = pybind11;
using bindings::Access;
using bindings::ArrayView;
using bindings::DType;
using bindings::Layout;
using bindings::Shape;
using bindings::Spec;

// obj as an array in the current device's memory: read_array, then TypeError
// for a host array (or host memory behind the interface), ValueError for
// memory on another device. `of` names the dtypes the binding takes.
ArrayView device_array(py::handle obj, const char* name, const char* of = nullptr);

// device_array, then every check of spec (spec.device is ignored: CUDA).
ArrayView device_arg(py::handle obj, const char* name, const Spec& spec);

// A C-contiguous array of dtype `dtype` and the given shape (-1: any extent),
// writable when asked: the common case of every dense kernel.
ArrayView dense(py::handle obj, const char* name, DType dtype, Shape shape, Access access = Access::read);

// obj may be None (returns false and leaves `out` empty).
bool optional_device_array(py::handle obj, const char* name, ArrayView& out);

// bf16 data travels as uint16 arrays of bit patterns (CuPy has no bfloat16
// dtype) or as 2-byte void records (NumPy/ml_dtypes' bfloat16).
inline bool is_bf16(const ArrayView& a) { return a.dtype == DType::uint16 || a.dtype == DType::bfloat16; }

// The `stream` argument: an int holding a cudaStream_t (0 is the legacy
// default stream), or an object with a `ptr` (CuPy) or `cuda_stream`
// (PyTorch) attribute.
ember::cuda::stream_t stream_arg(py::handle stream);

}  // namespace ember::cuda_bind
