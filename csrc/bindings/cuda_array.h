// The one validator of device arrays for ember._cuda's bindings.
//
// A device array is anything exposing __cuda_array_interface__ (v2 or v3):
// CuPy arrays, PyTorch CUDA tensors, Numba device arrays. device_array()
// reads shape, typestr, data = (pointer, read-only) and strides (None means
// C-contiguous) and checks that the memory is on the current device. Every
// other check names the argument and what it got, raising TypeError (wrong
// kind of object, wrong dtype) or ValueError (shape, strides, read-only,
// overlap, device). The interface's optional "stream" entry is not waited
// on: kernels run on the `stream` argument, and ordering work on other
// streams is the caller's business, as with any CUDA library call.
//
// Compiled by the host compiler: no CUDA headers here.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda_device.h"

namespace ember::cuda_bind {

namespace py = pybind11;

// bf16 arrays: CuPy has no bfloat16 dtype, so bf16 data travels as uint16
// arrays holding the bit patterns (typestr '<u2'), or as 2-byte void records
// ('<V2', '|V2': what NumPy/ml_dtypes and some exporters give for bfloat16).
enum class DType : uint8_t { f32, f64, i32, i64, bf16, other };

const char* dtype_name(DType d);

struct DevArray {
  py::object owner;  // the exporter, referenced for the whole call
  uintptr_t ptr = 0;
  bool readonly = false;
  DType dtype = DType::other;
  std::string typestr;
  int itemsize = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements

  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t size() const;
  bool c_contiguous() const;
  std::string shape_str() const;
  // The byte range [lo, hi) the array can touch; {0, 0} when empty.
  std::pair<uintptr_t, uintptr_t> extent() const;
  template <class T>
  T* data() const {
    return reinterpret_cast<T*>(ptr);
  }
};

// obj as a device array on the current device. `name` is how errors name it.
DevArray device_array(py::handle obj, const char* name);

// obj may be None (returns false and leaves `out` empty).
bool optional_device_array(py::handle obj, const char* name, DevArray& out);

void require_dtype(const DevArray& a, const char* name, std::initializer_list<DType> allowed);
void require_ndim(const DevArray& a, const char* name, int ndim);
// Each entry of `shape` is the required extent, or -1 for any.
void require_shape(const DevArray& a, const char* name, std::initializer_list<int64_t> shape);
void require_shape(const DevArray& a, const char* name, const std::vector<int64_t>& shape);
void require_contiguous(const DevArray& a, const char* name);
void require_writable(const DevArray& a, const char* name);
// `out` must not share memory with `in`; allow_same lets it be exactly the
// same array (same pointer, shape and strides), for in-place kernels.
void require_apart(const DevArray& out, const char* out_name, const DevArray& in, const char* in_name,
                   bool allow_same = false);

// A C-contiguous array of dtype `dt` and the given shape (-1: any extent),
// writable when asked: the common case of every dense kernel.
DevArray dense(py::handle obj, const char* name, DType dt, std::initializer_list<int64_t> shape,
               bool writable = false);

// The `stream` argument: an int holding a cudaStream_t (0 is the legacy
// default stream), or an object with a `ptr` (CuPy) or `cuda_stream`
// (PyTorch) attribute.
ember::cuda::stream_t stream_arg(py::handle stream);

std::string type_name(py::handle h);

}  // namespace ember::cuda_bind
