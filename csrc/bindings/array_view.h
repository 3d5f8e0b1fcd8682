// The one argument validator of every binding: an argument becomes a checked,
// non-owning view (data pointer, dtype, shape, strides in elements, writable,
// device) or a TypeError / ValueError that names it.
//
// Read from a NumPy array (its own description, no copy), from any other
// object with the buffer protocol (host memory), or from an object with
// __cuda_array_interface__ (v2/v3: CuPy, PyTorch, Numba; device memory). The
// view says where its memory lives; each binding states the device it takes
// (Spec::device), so the CPU and CUDA modules share this code. DLPack is not
// read here: a caller converts with numpy.from_dlpack / cupy.from_dlpack,
// which is zero-copy.
//
// Checks run in a fixed order, so the first thing wrong is the one reported:
// an array at all (TypeError), its device (TypeError), dtype (TypeError),
// ndim and extents (ValueError), strides and alignment for the layout the
// kernel walks (ValueError), writability (ValueError). Aliasing between
// arguments and sizes computed from arguments are checked by the helpers at
// the bottom. Nothing here copies or converts: a kernel never writes into a
// temporary the caller cannot see.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"

namespace ember::bindings {

namespace py = pybind11;

// uint16 and bfloat16 (NumPy's 2-byte void records, as ml_dtypes and some exporters give it) both
// carry bf16 bit patterns to the CUDA kernels that take bf16.
enum class DType : uint8_t { float32, float64, int64, int32, int8, uint8, uint16, bfloat16, other };

const char* dtype_name(DType dtype);

// The DType of a kernel's element type, for the bindings templated on it.
template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::float32; }
template <> constexpr DType dtype_of<double>() { return DType::float64; }

// How a kernel walks an array.
enum class Layout : uint8_t {
  strided,     // any strides that are whole elements (zero and negative included)
  rows,        // strided, with unit stride along the last dimension (rows contiguous)
  contiguous,  // C-contiguous
};

enum class Access : uint8_t { read, write };

// The extents an argument must have: one entry per dimension, -1 for any
// extent; Shape::any() takes any number of dimensions.
class Shape {
 public:
  static constexpr int kMaxDims = 6;
  Shape(std::initializer_list<int64_t> dims);
  static Shape any() { return Shape(); }

  bool any_ndim() const { return ndim_ < 0; }
  int ndim() const { return ndim_; }
  int64_t operator[](int d) const { return dims_[d]; }

 private:
  Shape() = default;
  int ndim_ = -1;
  int64_t dims_[kMaxDims] = {};
};

// What a binding asks of one argument.
struct Spec {
  DType dtype;
  Shape shape;
  Layout layout = Layout::contiguous;
  Access access = Access::read;
  Device device = Device::cpu;
};

// A shape or strides: up to kInline dimensions in place (no kernel but the
// elementwise ones takes more than four), more on the heap, so that reading an
// argument allocates nothing.
class Dims {
 public:
  static constexpr int kInline = 6;
  Dims() = default;
  Dims(const Dims& o) { *this = o; }
  Dims& operator=(const Dims& o) {
    if (this != &o) {
      resize(o.n_);
      std::copy(o.begin(), o.end(), begin());
    }
    return *this;
  }
  Dims(Dims&&) = default;
  Dims& operator=(Dims&&) = default;

  void resize(int n) {
    n_ = n;
    heap_.reset(n > kInline ? new int64_t[n] : nullptr);
  }
  int size() const { return n_; }
  int64_t* begin() { return heap_ ? heap_.get() : inline_; }
  int64_t* end() { return begin() + n_; }
  const int64_t* begin() const { return heap_ ? heap_.get() : inline_; }
  const int64_t* end() const { return begin() + n_; }
  int64_t& operator[](int d) { return begin()[d]; }
  int64_t operator[](int d) const { return begin()[d]; }
  int64_t back() const { return begin()[n_ - 1]; }
  bool operator==(const Dims& o) const { return std::equal(begin(), end(), o.begin(), o.end()); }

 private:
  int n_ = 0;
  int64_t inline_[kInline] = {};
  std::unique_ptr<int64_t[]> heap_;
};

struct ArrayView {
  const char* name = "";      // the argument's name, for messages
  py::handle obj;              // the argument (the call keeps it alive)
  py::object keep;             // holds a buffer export open, when one was taken
  void* data = nullptr;
  DType dtype = DType::other;
  int64_t itemsize = 0;
  Dims shape;
  Dims strides;                   // in elements (see whole_strides)
  bool whole_strides = true;      // every byte stride is a whole number of elements
  bool writable = false;
  Device device = Device::cpu;

  int ndim() const { return shape.size(); }
  int64_t size() const;
  bool c_contiguous() const;
  // The byte range [lo, hi) the array can touch; empty when it has no elements
  // (or when the view was never read).
  std::pair<uintptr_t, uintptr_t> extent() const;
  bool overlaps(const ArrayView& other) const;

  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

// NumPy's spelling of a shape: "(4, 5)", "(5,)", "()".
std::string shape_str(const Dims& shape);
// The name of obj's type ("list", "numpy.ndarray", "cupy.ndarray"), and of a view's dtype, as
// messages spell them.
std::string type_name(py::handle obj);
std::string dtype_str(const ArrayView& a);

// The dtype of an array argument (DType::other for anything else), without
// reading the rest of it.
DType dtype_of_arg(py::handle obj);

// obj's description, on whatever device; TypeError "<name> must be a
// numpy.ndarray of <of>, got <type>" when it is no array (`of` may be null),
// or, when the binding takes `device` arrays, the kind of array it takes.
ArrayView read_array(py::handle obj, const char* name, const char* of = nullptr, Device device = Device::cpu);

// The checks of Spec, one at a time, in the order array_arg runs them.
void check_device(const ArrayView& a, Device device);
void check_dtype(const ArrayView& a, std::initializer_list<DType> dtypes);  // one of them
void check_shape(const ArrayView& a, const Shape& shape);
void check_layout(const ArrayView& a, Layout layout);
void check_writable(const ArrayView& a);

// Every check of spec, in that order.
void check(const ArrayView& a, const Spec& spec);
// read_array, then check.
ArrayView array_arg(py::handle obj, const char* name, const Spec& spec);

// "<out> must not share memory with <in>".
void check_apart(const ArrayView& out, const ArrayView& in);
// out may be `in` itself (same memory, shape and strides: an elementwise kernel runs in place
// exactly) but no other array overlapping it.
void check_in_place(const ArrayView& out, const ArrayView& in);
// The arrays of an elementwise kernel, each read by the caller from its own device: every one
// float32 or every one float64, C-contiguous and of one shape; out writable and each input
// either out itself or apart from it.
void check_elementwise(const ArrayView* in, size_t n, const ArrayView& out);
// No two of the arrays share memory (ValueError naming a pair that does).
void check_disjoint(const std::vector<const ArrayView*>& arrays);

// a * b for sizes computed from arguments; ValueError naming `what` when it
// does not fit in an int64.
int64_t checked_mul(int64_t a, int64_t b, const char* what);

}  // namespace ember::bindings
