#include "bindings/array_view.h"

#include <pybind11/numpy.h>

#include <algorithm>
#include <sstream>
#include <type_traits>

#include "core/check.h"

namespace ember::bindings {
namespace {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr char kForeignOrder = '<';
#else
constexpr char kForeignOrder = '>';
#endif

// A dtype from NumPy's kind letter ('f', 'i', 'u') and item size, in native byte order.
DType classify(char kind, int64_t itemsize, bool native) {
  if (!native) return DType::other;
  if (kind == 'f') return itemsize == 4 ? DType::float32 : itemsize == 8 ? DType::float64 : DType::other;
  if (kind == 'i')
    return itemsize == 8 ? DType::int64 : itemsize == 4 ? DType::int32 : itemsize == 1 ? DType::int8 : DType::other;
  if (kind == 'u') return itemsize == 1 ? DType::uint8 : itemsize == 2 ? DType::uint16 : DType::other;
  if (kind == 'V') return itemsize == 2 ? DType::bfloat16 : DType::other;
  return DType::other;
}

// A buffer-protocol format ("f", "<d", "=q", ...) as a kind letter.
char format_kind(const char* format, bool* native) {
  *native = true;
  if (format == nullptr) return 'u';  // no format means unsigned bytes
  if (*format == '@' || *format == '=' || *format == '<' || *format == '>' || *format == '!') {
    if (*format == '!' || *format == kForeignOrder) *native = false;
    ++format;
  }
  if (format[0] == '\0' || format[1] != '\0') return '?';  // structs, repeats: not ours
  switch (format[0]) {
    case 'f': case 'd': case 'e': return 'f';
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n': return 'i';
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N': return 'u';
    default: return '?';
  }
}

// Fills shape and strides from byte strides; sizes come from an object we do
// not trust (buffer protocol, __cuda_array_interface__) unless `trusted`.
void set_geometry(ArrayView& v, int nd, const int64_t* shape, const int64_t* byte_strides, bool trusted) {
  v.shape.resize(nd);
  std::copy(shape, shape + nd, v.shape.begin());
  v.strides.resize(nd);
  int64_t natural = 1;  // the C-contiguous stride of dimension d, in elements
  for (int d = nd - 1; d >= 0; --d) {
    if (!trusted) {
      EMBER_CHECK_VALUE(shape[d] >= 0, v.name, " has a negative extent in its shape ", shape_str(v.shape));
      checked_mul(natural, std::max<int64_t>(shape[d], 1), v.name);
      checked_mul(v.itemsize, natural * std::max<int64_t>(shape[d], 1), v.name);
    }
    if (shape[d] == 1) {
      v.strides[d] = natural;  // never stepped along: the natural stride keeps layout checks simple
    } else if (v.itemsize > 0 && byte_strides[d] % v.itemsize == 0) {
      v.strides[d] = byte_strides[d] / v.itemsize;
    } else {
      v.whole_strides = false;
    }
    natural *= std::max<int64_t>(shape[d], 1);
  }
}

DType numpy_dtype(const py::array& arr) {
  const py::dtype dt = arr.dtype();
  return classify(dt.kind(), dt.itemsize(), dt.byteorder() != kForeignOrder);
}

static_assert(std::is_same<py::ssize_t, int64_t>::value, "extents and strides are read as int64");

void read_numpy(ArrayView& v) {
  const auto arr = py::reinterpret_borrow<py::array>(v.obj);
  v.itemsize = arr.itemsize();
  v.dtype = numpy_dtype(arr);
  v.data = const_cast<void*>(arr.data());
  v.writable = arr.writeable();
  set_geometry(v, static_cast<int>(arr.ndim()), arr.shape(), arr.strides(), true);
}

// A tuple of ints from __cuda_array_interface__ (shape, strides).
std::vector<int64_t> int_tuple(const ArrayView& v, py::handle seq, const char* key) {
  EMBER_CHECK_TYPE(py::isinstance<py::tuple>(seq), v.name, ".__cuda_array_interface__['", key,
                   "'] must be a tuple of ints");
  std::vector<int64_t> out;
  for (py::handle item : seq) out.push_back(item.cast<int64_t>());
  return out;
}

void read_cuda_interface(ArrayView& v, const py::object& cai) {
  EMBER_CHECK_TYPE(py::isinstance<py::dict>(cai), v.name, ".__cuda_array_interface__ must be a dict");
  const auto d = cai.cast<py::dict>();
  EMBER_CHECK_TYPE(d.contains("shape") && d.contains("typestr") && d.contains("data"), v.name,
                   ".__cuda_array_interface__ lacks shape, typestr or data");
  EMBER_CHECK_VALUE(!d.contains("mask") || d["mask"].is_none(), v.name, " is a masked array, which kernels cannot read");
  const std::string typestr = py::str(d["typestr"]);
  v.itemsize = typestr.size() >= 3 ? std::atoll(typestr.c_str() + 2) : 0;
  EMBER_CHECK_VALUE(v.itemsize > 0, v.name, " has the typestr '", typestr, "' in __cuda_array_interface__");
  v.dtype = classify(typestr[1], v.itemsize, typestr[0] != kForeignOrder);
  EMBER_CHECK_TYPE(py::isinstance<py::tuple>(d["data"]) && py::len(d["data"]) == 2, v.name,
                   ".__cuda_array_interface__['data'] must be (pointer, read_only)");
  const auto data = d["data"].cast<py::tuple>();
  v.data = data[0].is_none() ? nullptr : reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  v.writable = !data[1].cast<bool>();
  v.device = Device::cuda;
  const std::vector<int64_t> shape = int_tuple(v, d["shape"], "shape");
  std::vector<int64_t> strides(shape.size());
  if (d.contains("strides") && !d["strides"].is_none()) {
    strides = int_tuple(v, d["strides"], "strides");
    EMBER_CHECK_VALUE(strides.size() == shape.size(), v.name, " has ", strides.size(), " strides for ", shape.size(),
                      " dimensions in __cuda_array_interface__");
  } else {
    int64_t step = v.itemsize;
    for (size_t i = shape.size(); i-- > 0;) {
      strides[i] = step;
      step *= std::max<int64_t>(shape[i], 1);
    }
  }
  set_geometry(v, static_cast<int>(shape.size()), shape.data(), strides.data(), false);
}

void read_buffer(ArrayView& v) {
  PyObject* mv = PyMemoryView_FromObject(v.obj.ptr());
  if (mv == nullptr) throw py::error_already_set();
  v.keep = py::reinterpret_steal<py::object>(mv);
  const Py_buffer* b = PyMemoryView_GET_BUFFER(mv);
  bool native;
  const char kind = format_kind(b->format, &native);
  v.itemsize = b->itemsize;
  v.dtype = classify(kind, v.itemsize, native);
  v.data = b->buf;
  v.writable = !b->readonly;
  set_geometry(v, b->ndim, b->shape, b->strides, false);  // a memoryview always has both
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::int64: return "int64";
    case DType::int32: return "int32";
    case DType::int8: return "int8";
    case DType::uint8: return "uint8";
    case DType::uint16: return "uint16";
    case DType::bfloat16: return "bfloat16";
    case DType::other: break;
  }
  return "other";
}

Shape::Shape(std::initializer_list<int64_t> dims) : ndim_(static_cast<int>(dims.size())) {
  EMBER_ASSERT(dims.size() <= kMaxDims, "a Shape of ", dims.size(), " dimensions");
  std::copy(dims.begin(), dims.end(), dims_);
}

int64_t ArrayView::size() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool ArrayView::c_contiguous() const {
  if (size() == 0) return true;
  if (!whole_strides) return false;
  int64_t expected = 1;
  for (int d = ndim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::pair<uintptr_t, uintptr_t> ArrayView::extent() const {
  if (data == nullptr || size() == 0) return {0, 0};
  intptr_t lo = reinterpret_cast<intptr_t>(data), hi = lo;
  for (int d = 0; d < ndim(); ++d) {
    const intptr_t span = static_cast<intptr_t>(shape[d] - 1) * strides[d] * itemsize;
    (span < 0 ? lo : hi) += span;
  }
  return {static_cast<uintptr_t>(lo), static_cast<uintptr_t>(hi) + itemsize};
}

bool ArrayView::overlaps(const ArrayView& other) const {
  if (device != other.device) return false;
  const auto [al, ah] = extent();
  const auto [bl, bh] = other.extent();
  return al < ah && bl < bh && al < bh && bl < ah;
}

std::string dtype_str(const ArrayView& a) {
  if (a.dtype != DType::other) return dtype_name(a.dtype);
  if (py::hasattr(a.obj, "dtype")) return py::str(a.obj.attr("dtype"));
  if (a.keep) return "format '" + std::string(py::str(a.keep.attr("format"))) + "'";
  return "an unsupported dtype";
}

std::string type_name(py::handle obj) {
  const py::handle type = py::type::handle_of(obj);
  const std::string name = py::str(type.attr("__name__"));
  const std::string module = py::str(py::getattr(type, "__module__", py::str("builtins")));
  if (module == "builtins") return name;
  return module.substr(0, module.find('.')) + "." + name;  // the package's name: numpy.ndarray, cupy.ndarray
}

std::string shape_str(const Dims& shape) {
  std::ostringstream os;
  os << "(";
  for (int d = 0; d < shape.size(); ++d) os << (d ? ", " : "") << shape[d];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

DType dtype_of_arg(py::handle obj) {
  if (py::isinstance<py::array>(obj)) return numpy_dtype(py::reinterpret_borrow<py::array>(obj));
  if (py::hasattr(obj, "__cuda_array_interface__") || PyObject_CheckBuffer(obj.ptr())) return read_array(obj, "").dtype;
  return DType::other;
}

ArrayView read_array(py::handle obj, const char* name, const char* of, Device device) {
  ArrayView v;
  v.name = name;
  v.obj = obj;
  if (py::isinstance<py::array>(obj)) {
    read_numpy(v);
    return v;
  }
  const py::object cai = py::getattr(obj, "__cuda_array_interface__", py::none());
  if (!cai.is_none()) {
    read_cuda_interface(v, cai);
    return v;
  }
  if (device == Device::cuda)
    EMBER_CHECK_TYPE(PyObject_CheckBuffer(obj.ptr()), name, " must be a device array exposing __cuda_array_interface__",
                     " (a CuPy array or a PyTorch CUDA tensor)", of ? " of " : "", of ? of : "", ", got ",
                     type_name(obj));
  EMBER_CHECK_TYPE(PyObject_CheckBuffer(obj.ptr()), name, " must be a numpy.ndarray", of ? " of " : "", of ? of : "",
                   ", got ", type_name(obj));
  read_buffer(v);
  return v;
}

void check_device(const ArrayView& a, Device device) {
  if (a.device == device) return;
  if (device == Device::cpu)
    throw TypeError(detail::concat(a.name, " is a CUDA array; ember._C kernels take host (NumPy) arrays"));
  throw TypeError(detail::concat(a.name, " is a host array (", type_name(a.obj),
                                 "); ember._cuda kernels need device arrays (CuPy)"));
}

void check_dtype(const ArrayView& a, std::initializer_list<DType> dtypes) {
  if (std::find(dtypes.begin(), dtypes.end(), a.dtype) != dtypes.end()) return;
  std::string want;
  for (DType d : dtypes) want += std::string(want.empty() ? "" : " or ") + dtype_name(d);
  throw TypeError(detail::concat(a.name, " must have dtype ", want, ", got ", dtype_str(a)));
}

void check_shape(const ArrayView& a, const Shape& shape) {
  if (shape.any_ndim()) return;
  EMBER_CHECK_VALUE(a.ndim() == shape.ndim(), a.name, " must be ", shape.ndim(), "-D, got shape ", shape_str(a.shape));
  for (int d = 0; d < shape.ndim(); ++d)
    EMBER_CHECK_VALUE(shape[d] < 0 || a.shape[d] == shape[d], a.name, " has shape ", shape_str(a.shape),
                      ": dimension ", d, " must be ", shape[d]);
}

void check_layout(const ArrayView& a, Layout layout) {
  if (a.size() == 0) return;
  EMBER_CHECK_VALUE(reinterpret_cast<uintptr_t>(a.data) % a.itemsize == 0, a.name, " must be aligned to ", a.itemsize,
                    " bytes (got a misaligned view)");
  EMBER_CHECK_VALUE(a.whole_strides, a.name, " has strides that are not multiples of its item size (", a.itemsize,
                    " bytes)");
  switch (layout) {
    case Layout::strided:
      return;
    case Layout::rows: {
      Dims bytes(a.strides);
      for (int64_t& b : bytes) b *= a.itemsize;
      EMBER_CHECK_VALUE(a.ndim() == 0 || a.strides.back() == 1, a.name,
                        " must have unit column stride (rows contiguous), got strides ", shape_str(bytes), " bytes");
      return;
    }
    case Layout::contiguous:
      EMBER_CHECK_VALUE(a.c_contiguous(), a.name, " must be C-contiguous");
      return;
  }
}

void check_writable(const ArrayView& a) { EMBER_CHECK_VALUE(a.writable, a.name, " is read-only"); }

void check(const ArrayView& a, const Spec& spec) {
  check_device(a, spec.device);
  check_dtype(a, {spec.dtype});
  check_shape(a, spec.shape);
  check_layout(a, spec.layout);
  if (spec.access == Access::write) check_writable(a);
}

ArrayView array_arg(py::handle obj, const char* name, const Spec& spec) {
  ArrayView a = read_array(obj, name, dtype_name(spec.dtype));
  check(a, spec);
  return a;
}

void check_apart(const ArrayView& out, const ArrayView& in) {
  EMBER_CHECK_VALUE(!out.overlaps(in), out.name, " must not share memory with ", in.name);
}

void check_in_place(const ArrayView& out, const ArrayView& in) {
  const bool same = out.data == in.data && out.itemsize == in.itemsize && out.shape == in.shape &&
                    out.strides == in.strides;
  EMBER_CHECK_VALUE(same || !out.overlaps(in), out.name, " partly overlaps ", in.name, " (in place, the very same ",
                    "array, is allowed; other overlaps are not)");
}

void check_elementwise(const ArrayView* in, size_t n, const ArrayView& out) {
  for (size_t i = 0; i < n; ++i) {
    if (i == 0) {
      check_dtype(in[0], {DType::float32, DType::float64});
    } else {
      EMBER_CHECK_TYPE(in[i].dtype == in[0].dtype, in[i].name, " has dtype ", dtype_str(in[i]), " but ", in[0].name,
                       " has ", dtype_str(in[0]));
      EMBER_CHECK_VALUE(in[i].shape == in[0].shape, in[i].name, " has shape ", shape_str(in[i].shape), " but ",
                        in[0].name, " has shape ", shape_str(in[0].shape));
    }
    check_layout(in[i], Layout::contiguous);
  }
  EMBER_CHECK_TYPE(out.dtype == in[0].dtype, out.name, " has dtype ", dtype_str(out), " but ", in[0].name, " has ",
                   dtype_str(in[0]));
  EMBER_CHECK_VALUE(out.shape == in[0].shape, out.name, " has shape ", shape_str(out.shape), " but ", in[0].name,
                    " has shape ", shape_str(in[0].shape));
  check_layout(out, Layout::contiguous);
  check_writable(out);
  for (size_t i = 0; i < n; ++i) check_in_place(out, in[i]);
}

void check_disjoint(const std::vector<const ArrayView*>& arrays) {
  std::vector<std::pair<std::pair<uintptr_t, uintptr_t>, const ArrayView*>> spans;
  for (const ArrayView* a : arrays)
    if (a->size() > 0) spans.push_back({a->extent(), a});
  std::sort(spans.begin(), spans.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  // Sorted by start, an array overlaps an earlier one exactly when it starts
  // before the furthest end so far. (The arrays are on one device: the
  // binding checked each.)
  for (size_t i = 1, far = 0; i < spans.size(); ++i) {
    EMBER_CHECK_VALUE(spans[i].first.first >= spans[far].first.second, spans[far].second->name, " and ",
                      spans[i].second->name, " must not share memory");
    if (spans[i].first.second > spans[far].first.second) far = i;
  }
}

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  EMBER_CHECK_VALUE(!__builtin_mul_overflow(a, b, &r), what, " is too big: ", a, " x ", b,
                    " does not fit in a 64-bit integer");
  return r;
}

}  // namespace ember::bindings
