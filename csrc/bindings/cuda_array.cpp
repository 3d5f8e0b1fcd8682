// The device-array validator (see cuda_array.h).
#include "bindings/cuda_array.h"

#include <sstream>

#include "core/check.h"

namespace ember::cuda_bind {

using ember::detail::concat;

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::bf16: return "bfloat16 (uint16 bit patterns)";
    default: return "other";
  }
}

std::string type_name(py::handle h) {
  py::handle t = reinterpret_cast<PyObject*>(Py_TYPE(h.ptr()));
  std::string mod = py::str(t.attr("__module__"));
  std::string qual = py::str(t.attr("__qualname__"));
  return mod == "builtins" ? qual : mod + "." + qual;
}

int64_t DevArray::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool DevArray::c_contiguous() const {
  int64_t expect = 1;
  for (int d = ndim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

std::string DevArray::shape_str() const {
  std::ostringstream os;
  os << "(";
  for (int d = 0; d < ndim(); ++d) os << (d ? ", " : "") << shape[d];
  if (ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

std::pair<uintptr_t, uintptr_t> DevArray::extent() const {
  if (size() == 0) return {0, 0};
  int64_t lo = 0, hi = 0;
  for (int d = 0; d < ndim(); ++d) {
    const int64_t span = (shape[d] - 1) * strides[d] * itemsize;
    (span < 0 ? lo : hi) += span;
  }
  return {static_cast<uintptr_t>(static_cast<int64_t>(ptr) + lo),
          static_cast<uintptr_t>(static_cast<int64_t>(ptr) + hi + itemsize)};
}

namespace {

DType parse_typestr(const std::string& ts, int& itemsize) {
  itemsize = 0;
  if (ts.size() >= 3) itemsize = std::atoi(ts.c_str() + 2);
  if (ts == "<f4") return DType::f32;
  if (ts == "<f8") return DType::f64;
  if (ts == "<i4") return DType::i32;
  if (ts == "<i8") return DType::i64;
  if (ts == "<u2" || ts == "<V2" || ts == "|V2") return DType::bf16;
  return DType::other;
}

bool looks_like_host_array(py::handle obj) {
  return py::hasattr(obj, "__array_interface__") || py::hasattr(obj, "__array__") ||
         PyObject_CheckBuffer(obj.ptr());
}

}  // namespace

DevArray device_array(py::handle obj, const char* name) {
  EMBER_CHECK_TYPE(!obj.is_none(), name, " must be a device array (CuPy), got None");
  if (!py::hasattr(obj, "__cuda_array_interface__")) {
    EMBER_CHECK_TYPE(!looks_like_host_array(obj), name, " is a host array (", type_name(obj),
                     "); ember._cuda kernels need device arrays (CuPy)");
    EMBER_CHECK_TYPE(false, name, " must be a device array exposing __cuda_array_interface__ (a CuPy array or ",
                     "a PyTorch CUDA tensor), got ", type_name(obj));
  }
  py::object cai = obj.attr("__cuda_array_interface__");
  EMBER_CHECK_TYPE(py::isinstance<py::dict>(cai), name, ".__cuda_array_interface__ is not a dict");
  py::dict d = cai.cast<py::dict>();
  DevArray a;
  a.owner = py::reinterpret_borrow<py::object>(obj);
  EMBER_CHECK_TYPE(d.contains("shape") && d.contains("typestr") && d.contains("data"), name,
                   ".__cuda_array_interface__ lacks shape, typestr or data");
  for (py::handle s : d["shape"]) a.shape.push_back(s.cast<int64_t>());
  a.typestr = d["typestr"].cast<std::string>();
  a.dtype = parse_typestr(a.typestr, a.itemsize);
  EMBER_CHECK_TYPE(a.itemsize > 0, name, " has an unsupported typestr '", a.typestr, "'");
  py::tuple data = d["data"].cast<py::tuple>();
  EMBER_CHECK_TYPE(data.size() == 2, name, ".__cuda_array_interface__['data'] must be (pointer, read_only)");
  a.ptr = data[0].is_none() ? 0 : data[0].cast<uintptr_t>();
  a.readonly = data[1].cast<bool>();
  if (d.contains("mask")) EMBER_CHECK_VALUE(d["mask"].is_none(), name, " is a masked array, which is not supported");
  const int nd = a.ndim();
  a.strides.assign(nd, 0);
  if (d.contains("strides") && !d["strides"].is_none()) {
    py::tuple st = d["strides"].cast<py::tuple>();
    EMBER_CHECK_VALUE(static_cast<int>(st.size()) == nd, name, " has ", st.size(), " strides for ", nd,
                      " dimensions");
    for (int i = 0; i < nd; ++i) {
      const int64_t bytes = st[i].cast<int64_t>();
      EMBER_CHECK_VALUE(bytes % a.itemsize == 0, name, " has stride ", bytes, " bytes in dimension ", i,
                        ", not a multiple of its item size (", a.itemsize, ")");
      a.strides[i] = bytes / a.itemsize;
    }
  } else {
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; --i) {
      a.strides[i] = s;
      s *= a.shape[i];
    }
  }
  if (a.size() > 0) {
    EMBER_CHECK_VALUE(a.ptr % static_cast<uintptr_t>(a.itemsize) == 0, name, " is misaligned: its address is not a ",
                      "multiple of its item size (", a.itemsize, ")");
    const ember::cuda::PointerInfo info = ember::cuda::pointer_info(reinterpret_cast<const void*>(a.ptr));
    EMBER_CHECK_TYPE(info.kind != ember::cuda::PointerInfo::host_memory, name, " (", type_name(obj),
                     ") points to host memory; ember._cuda kernels need device memory");
    const int cur = ember::cuda::current_device();
    EMBER_CHECK_VALUE(info.kind == ember::cuda::PointerInfo::managed_memory || info.device == cur, name,
                      " is on CUDA device ", info.device, " but the current device is ", cur,
                      " (select it with cupy.cuda.Device(", info.device, ") or move the array)");
  }
  return a;
}

bool optional_device_array(py::handle obj, const char* name, DevArray& out) {
  if (obj.is_none()) return false;
  out = device_array(obj, name);
  return true;
}

void require_dtype(const DevArray& a, const char* name, std::initializer_list<DType> allowed) {
  for (DType d : allowed)
    if (a.dtype == d) return;
  std::string want;
  for (DType d : allowed) want += (want.empty() ? "" : " or ") + std::string(dtype_name(d));
  EMBER_CHECK_TYPE(false, name, " must have dtype ", want, ", got typestr '", a.typestr, "'");
}

void require_ndim(const DevArray& a, const char* name, int ndim) {
  EMBER_CHECK_VALUE(a.ndim() == ndim, name, " must be ", ndim, "-D, got shape ", a.shape_str());
}

void require_shape(const DevArray& a, const char* name, const std::vector<int64_t>& shape) {
  require_ndim(a, name, static_cast<int>(shape.size()));
  for (size_t d = 0; d < shape.size(); ++d)
    EMBER_CHECK_VALUE(shape[d] < 0 || a.shape[d] == shape[d], name, " has shape ", a.shape_str(), ": dimension ", d,
                      " must be ", shape[d]);
}

void require_shape(const DevArray& a, const char* name, std::initializer_list<int64_t> shape) {
  require_shape(a, name, std::vector<int64_t>(shape));
}

void require_contiguous(const DevArray& a, const char* name) {
  EMBER_CHECK_VALUE(a.c_contiguous(), name, " must be C-contiguous, got shape ", a.shape_str(), " with strides (in ",
                    "elements) ", [&] {
                      std::ostringstream os;
                      for (int d = 0; d < a.ndim(); ++d) os << (d ? ", " : "(") << a.strides[d];
                      os << ")";
                      return os.str();
                    }(), "; pass a contiguous copy (cupy.ascontiguousarray)");
}

void require_writable(const DevArray& a, const char* name) {
  EMBER_CHECK_VALUE(!a.readonly, name, " is read-only");
}

void require_apart(const DevArray& out, const char* out_name, const DevArray& in, const char* in_name,
                   bool allow_same) {
  if (allow_same && out.ptr == in.ptr && out.shape == in.shape && out.strides == in.strides &&
      out.itemsize == in.itemsize)
    return;
  const auto [ol, oh] = out.extent();
  const auto [il, ih] = in.extent();
  const bool overlap = ol < oh && il < ih && ol < ih && il < oh;
  if (allow_same)
    EMBER_CHECK_VALUE(!overlap, out_name, " partly overlaps ", in_name,
                      " (in place, the very same array, is allowed; other overlaps are not)");
  else
    EMBER_CHECK_VALUE(!overlap, out_name, " must not share memory with ", in_name);
}

DevArray dense(py::handle obj, const char* name, DType dt, std::initializer_list<int64_t> shape, bool writable) {
  DevArray a = device_array(obj, name);
  require_dtype(a, name, {dt});
  require_shape(a, name, shape);
  require_contiguous(a, name);
  if (writable) require_writable(a, name);
  return a;
}

ember::cuda::stream_t stream_arg(py::handle stream) {
  py::handle s = stream;
  py::object holder;
  if (!py::isinstance<py::int_>(s)) {
    if (py::hasattr(s, "ptr"))
      holder = s.attr("ptr");
    else if (py::hasattr(s, "cuda_stream"))
      holder = s.attr("cuda_stream");
    EMBER_CHECK_TYPE(holder && py::isinstance<py::int_>(holder), "stream must be an int holding a cudaStream_t ",
                     "(e.g. cupy.cuda.get_current_stream().ptr), got ", type_name(stream));
    s = holder;
  }
  const auto v = s.cast<long long>();
  EMBER_CHECK_VALUE(v >= 0, "stream must be a cudaStream_t handle (>= 0), got ", v);
  return reinterpret_cast<ember::cuda::stream_t>(static_cast<uintptr_t>(v));
}

}  // namespace ember::cuda_bind
