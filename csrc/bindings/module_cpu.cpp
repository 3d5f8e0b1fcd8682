// ember._C: the CPU kernels.
//
// Every binding validates all of its arguments (type, dtype, ndim, shapes and
// their agreement, strides or contiguity, alignment, outputs aliasing inputs,
// size overflow) while holding the GIL, builds non-owning views, then releases
// the GIL for the kernel itself. The arrays stay referenced by this frame for
// the whole call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "core/cpu_features.h"
#include "core/host_cache.h"
#include "core/registry.h"
#include "core/threads.h"
#include "ops/conv2d/conv2d.h"
#include "ops/eltwise/eltwise.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_ukernel.h"
#include "ops/pool2d/pool2d.h"
#include "ops/qmatmul/qmatmul.h"
#include "ops/optim_step/optim_step.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace py = pybind11;
using ember::detail::concat;

namespace {

std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) os << (d ? ", " : "") << a.shape(d);
  if (a.ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

// An uninitialised C-contiguous array; large ones come from the host cache and
// go back to it when the array (and every view of it) is gone.
py::array cached_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
  size_t bytes = static_cast<size_t>(dtype.itemsize());
  for (py::ssize_t d : shape) {
    EMBER_CHECK_VALUE(d >= 0, "negative dimensions are not allowed");
    EMBER_CHECK_VALUE(!__builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes) &&
                          bytes <= static_cast<size_t>(PTRDIFF_MAX),
                      "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size.");
  }
  if (bytes < ember::host_cache::kMinBytes) return py::array(dtype, shape);
  ember::host_cache::Block got{};
  try {
    got = ember::host_cache::allocate(bytes);
  } catch (const std::bad_alloc&) {
    PyErr_Format(PyExc_MemoryError, "Unable to allocate %zu bytes for an array of dtype %s", bytes,
                 std::string(py::str(dtype)).c_str());
    throw py::error_already_set();
  }
  auto* block = new ember::host_cache::Block(got);
  py::capsule owner;
  try {
    owner = py::capsule(block, [](void* p) {
      auto* b = static_cast<ember::host_cache::Block*>(p);
      ember::host_cache::release(*b);
      delete b;
    });
  } catch (...) {
    ember::host_cache::release(*block);
    delete block;
    throw;
  }
  return py::array(dtype, shape, std::vector<py::ssize_t>{}, block->ptr, owner);
}


py::array py_empty(const std::vector<py::ssize_t>& shape, const py::object& dtype) {
  return cached_empty(shape, py::dtype::from_args(dtype));
}

std::string type_name(const py::handle& h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// A float32 ndarray argument with the given ndim, or a TypeError/ValueError naming it.
py::array expect_f32(const py::handle& obj, const char* name, int ndim) {
  EMBER_CHECK_TYPE(py::isinstance<py::array>(obj), name, " must be a numpy.ndarray of float32, got ",
                   type_name(obj));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  EMBER_CHECK_TYPE(arr.dtype().is(py::dtype::of<float>()), name, " must have dtype float32, got ",
                   std::string(py::str(arr.dtype())));
  EMBER_CHECK_VALUE(arr.ndim() == ndim, name, " must be ", ndim, "-D, got shape ", shape_str(arr));
  const int flags = py::detail::array_proxy(arr.ptr())->flags;
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_, name,
                    " must be aligned to 4 bytes (got a misaligned view)");
  for (py::ssize_t d = 0; d < ndim; ++d)
    EMBER_CHECK_VALUE(arr.strides(d) % static_cast<py::ssize_t>(sizeof(float)) == 0, name, " has stride ",
                      arr.strides(d), " bytes in dimension ", d, ", not a multiple of the item size (4)");
  return arr;
}

// A C-contiguous array of dtype T with the given shape (-1: any extent), or a
// TypeError/ValueError naming it. Used by the bindings whose kernels index
// dense rows and planes (convolution, pooling, cross-entropy).
template <class T>
py::array expect_dense(const py::handle& obj, const char* name, std::initializer_list<int64_t> shape,
                       bool writable = false) {
  const char* tname = std::is_same<T, float>::value ? "float32" : std::is_same<T, double>::value ? "float64" : "int64";
  EMBER_CHECK_TYPE(py::isinstance<py::array>(obj), name, " must be a numpy.ndarray of ", tname, ", got ",
                   type_name(obj));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  EMBER_CHECK_TYPE(arr.dtype().is(py::dtype::of<T>()), name, " must have dtype ", tname, ", got ",
                   std::string(py::str(arr.dtype())));
  EMBER_CHECK_VALUE(arr.ndim() == static_cast<py::ssize_t>(shape.size()), name, " must be ", shape.size(),
                    "-D, got shape ", shape_str(arr));
  int d = 0;
  for (int64_t want : shape) {
    EMBER_CHECK_VALUE(want < 0 || arr.shape(d) == want, name, " has shape ", shape_str(arr), ": dimension ", d,
                      " must be ", want);
    ++d;
  }
  const int flags = py::detail::array_proxy(arr.ptr())->flags;
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_, name, " must be C-contiguous");
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_, name, " must be aligned");
  if (writable) EMBER_CHECK_VALUE(arr.writeable(), name, " is read-only");
  return arr;
}

// The byte range [lo, hi) an array can touch; empty for size-0 arrays.
std::pair<uintptr_t, uintptr_t> extent(const py::array& a) {
  if (a.size() == 0) return {0, 0};
  intptr_t lo = reinterpret_cast<intptr_t>(a.data()), hi = lo;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    intptr_t span = static_cast<intptr_t>(a.shape(d) - 1) * a.strides(d);
    (span < 0 ? lo : hi) += span;
  }
  return {static_cast<uintptr_t>(lo), static_cast<uintptr_t>(hi) + a.itemsize()};
}

bool overlaps(const py::array& x, const py::array& y) {
  auto [xl, xh] = extent(x);
  auto [yl, yh] = extent(y);
  return xl < xh && yl < yh && xl < yh && yl < xh;
}

ember::MatrixF32 view(const py::array& arr, bool trans) {
  const float* p = static_cast<const float*>(arr.data());
  int64_t r = arr.shape(0), c = arr.shape(1);
  int64_t rs = arr.strides(0) / 4, cs = arr.strides(1) / 4;
  // A dimension of extent 1 is never stepped along: give it the natural
  // stride so layout checks see a single row or column as contiguous.
  if (r == 1) rs = c;
  if (c == 1) cs = 1;
  if (trans) return {p, c, r, cs, rs};
  return {p, r, c, rs, cs};
}

struct GemmCall {
  ember::gemm::GemmArgs args;
  py::array out;
  py::array bias_keepalive;
};

GemmCall prepare_gemm(const py::handle& a_obj, const py::handle& b_obj, const py::handle& out_obj, float alpha,
                      float beta, bool trans_a, bool trans_b, const py::handle& bias_obj, bool relu) {
  py::array a = expect_f32(a_obj, "a", 2);
  py::array b = expect_f32(b_obj, "b", 2);
  GemmCall call;
  auto& g = call.args;
  g.a = view(a, trans_a);
  g.b = view(b, trans_b);
  const int64_t M = g.a.rows, K = g.a.cols, N = g.b.cols;
  EMBER_CHECK_VALUE(g.b.rows == K, "inner dimensions differ: op(a) is ", M, "x", K, " (a has shape ",
                    shape_str(a), trans_a ? ", transposed" : "", ") but op(b) is ", g.b.rows, "x", N,
                    " (b has shape ", shape_str(b), trans_b ? ", transposed" : "", ")");
  g.alpha = alpha;
  g.beta = beta;
  g.relu = relu;

  if (out_obj.is_none()) {
    EMBER_CHECK_VALUE(beta == 0.0f, "beta is ", beta, " but out is None: beta scales the existing out, pass out=");
    int64_t bytes;
    EMBER_CHECK_VALUE(!__builtin_mul_overflow(M, N, &bytes) && !__builtin_mul_overflow(bytes, int64_t(4), &bytes),
                      "the result of shape (", M, ", ", N,
                      ") is too big: its size in bytes does not fit in a 64-bit integer");
    call.out = cached_empty({M, N}, py::dtype::of<float>());
  } else {
    call.out = expect_f32(out_obj, "out", 2);
    py::array& o = call.out;
    EMBER_CHECK_VALUE(o.shape(0) == M && o.shape(1) == N, "out must have shape (", M, ", ", N,
                      ") for op(a) ", M, "x", K, " @ op(b) ", K, "x", N, ", got ", shape_str(o));
    EMBER_CHECK_VALUE(o.writeable(), "out is read-only");
    EMBER_CHECK_VALUE(N <= 1 || o.strides(1) == 4,
                      "out must have unit column stride (rows contiguous), got strides (", o.strides(0), ", ",
                      o.strides(1), ")");
    EMBER_CHECK_VALUE(M <= 1 || o.strides(0) >= 4 * N,
                      "out rows must not overlap: row stride must be at least ", 4 * N, " bytes, got ",
                      o.strides(0));
    EMBER_CHECK_VALUE(!overlaps(o, a), "out must not share memory with a");
    EMBER_CHECK_VALUE(!overlaps(o, b), "out must not share memory with b");
  }
  g.c = {static_cast<float*>(call.out.mutable_data()), M, N, M <= 1 ? N : call.out.strides(0) / 4};

  if (!bias_obj.is_none()) {
    py::array bias = expect_f32(bias_obj, "bias", 1);
    EMBER_CHECK_VALUE(bias.shape(0) == N, "bias must have shape (", N, ",) (one value per column of the result), got ",
                      shape_str(bias));
    // A strided bias is copied to a contiguous temporary: it is an input, only read.
    call.bias_keepalive = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(bias);
    if (!out_obj.is_none())
      EMBER_CHECK_VALUE(!overlaps(call.out, bias), "out must not share memory with bias");
    g.bias = static_cast<const float*>(call.bias_keepalive.data());
  }
  return call;
}

py::array py_gemm(const py::handle& a, const py::handle& b, const py::handle& out, float alpha, float beta,
                  bool trans_a, bool trans_b, const py::handle& bias, bool relu) {
  GemmCall call = prepare_gemm(a, b, out, alpha, beta, trans_a, trans_b, bias, relu);
  const ember::Isa isa = ember::active_isa();
  const int nthreads = ember::get_num_threads();
  {
    py::gil_scoped_release release;
    ember::gemm::gemm_cpu(call.args, isa, nthreads);
  }
  return call.out;
}

py::array py_gemm_ref(const py::handle& a, const py::handle& b, const py::handle& out, float alpha, float beta,
                      bool trans_a, bool trans_b, const py::handle& bias, bool relu) {
  GemmCall call = prepare_gemm(a, b, out, alpha, beta, trans_a, trans_b, bias, relu);
  {
    py::gil_scoped_release release;
    ember::gemm::gemm_ref(call.args);
  }
  return call.out;
}

// The machine's fp32 FMA rate with the active ISA's widest FMA, on `threads`
// threads at once, in GFLOP/s.
double py_measure_fma_peak(double seconds, int threads) {
  EMBER_CHECK_VALUE(seconds > 0 && seconds <= 60, "seconds must be in (0, 60], got ", seconds);
  EMBER_CHECK_VALUE(threads >= 0 && threads <= 1024, "threads must be between 0 (all) and 1024, got ", threads);
  if (threads == 0) threads = ember::get_num_threads();
  auto fn = ember::lookup_fn<ember::gemm::fma_peak_fn>("fma_peak", ember::active_isa());
  py::gil_scoped_release release;
  using clock = std::chrono::steady_clock;
  float sink = 0.0f;
  // Calibrate on one thread, then run every thread for about `seconds`.
  int64_t iters = 1 << 16;
  double elapsed = 0.0;
  for (;;) {
    auto t0 = clock::now();
    fn(iters, &sink);
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    if (elapsed > 0.02) break;
    iters *= 4;
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(iters * seconds / elapsed));
  std::vector<float> sinks(threads, 0.0f);
  std::vector<int64_t> flops(threads, 0);
  auto t0 = clock::now();
  ember::parallel_run(threads, [&](int tid) { flops[tid] = fn(iters, &sinks[tid]); });
  double wall = std::chrono::duration<double>(clock::now() - t0).count();
  double total = 0;
  for (int64_t f : flops) total += static_cast<double>(f);
  return total / wall * 1e-9 + 0.0 * (sink + sinks[0]);
}

// The rate at which `threads` threads together read the float32 array `buffer`
// (each summing its own contiguous slice, `repeats` times), in GB/s. With a
// buffer well past the last-level cache this is the machine's read bandwidth,
// the ceiling of memory-bound kernels.
double py_measure_read_bandwidth(const py::handle& buffer_obj, int repeats, int threads) {
  py::array buf = expect_dense<float>(buffer_obj, "buffer", {-1});
  EMBER_CHECK_VALUE(repeats >= 1 && repeats <= 1000, "repeats must be between 1 and 1000, got ", repeats);
  EMBER_CHECK_VALUE(threads >= 0 && threads <= 1024, "threads must be between 0 (all) and 1024, got ", threads);
  if (threads == 0) threads = ember::get_num_threads();
  const float* data = static_cast<const float*>(buf.data());
  const int64_t n = buf.shape(0);
  py::gil_scoped_release release;
  std::vector<float> sinks(threads, 0.0f);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  ember::parallel_run(threads, [&](int tid) {
    const int64_t lo = n * tid / threads, hi = n * (tid + 1) / threads;
    float lanes[16] = {};
    for (int r = 0; r < repeats; ++r) {
      int64_t i = lo;
      for (; i + 16 <= hi; i += 16)
        for (int l = 0; l < 16; ++l) lanes[l] += data[i + l];
      for (; i < hi; ++i) lanes[0] += data[i];
    }
    for (float l : lanes) sinks[tid] += l;
  });
  const double wall = std::chrono::duration<double>(clock::now() - t0).count();
  return 4.0 * static_cast<double>(n) * repeats / wall * 1e-9 + 0.0 * sinks[0];
}

// ------------------------------------------------------------------ float64 references

// Whether a kernel's leading float argument is float64. The references take float64 (what
// gradient checks need); the fast paths only float32, so they say where float64 runs.
template <bool Ref>
bool is_f64(const py::handle& obj, const char* name, const char* op) {
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().is(py::dtype::of<double>()))
    return false;
  EMBER_CHECK_TYPE(Ref, name, " has dtype float64, but ", op, " takes float32 (float64 runs on ", op, "_ref)");
  return true;
}

// ------------------------------------------------------------------ geometry bounds

// Convolution and pooling geometry is bounded so that the kernels' unchecked index
// arithmetic cannot overflow: every step (stride, padding, dilation) and every extent
// (a dilated window, the span of the output positions, the padded input) is below 2^62,
// so a tap's position i * stride - pad + p * dilation and any sum of two extents fit in
// an int64. Larger values are refused, naming the argument.
constexpr int64_t kMaxExtent = int64_t(1) << 62;

void check_step(int64_t v, const char* name) {
  EMBER_CHECK_VALUE(v < kMaxExtent, name, " is ", v, ", too large: geometry values must be below 2**62");
}

// (count - 1) * step + 1, the extent of `count` positions `step` apart, checked.
int64_t checked_extent(int64_t count, int64_t step, const char* what) {
  int64_t span;
  EMBER_CHECK_VALUE(count >= 1 && !__builtin_mul_overflow(count - 1, step, &span) && span < kMaxExtent - 1, what,
                    " spans (", count, " - 1) x ", step, " + 1 positions, too large: geometry extents must be "
                    "below 2**62");
  return span + 1;
}

// One axis: kernel k with dilation d, stride s, leading padding p, input size n and
// output size o; checks every extent the kernels compute.
void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  check_step(s, "stride");
  check_step(p, "padding");
  check_step(d, "dilation");
  const int64_t window = checked_extent(k, d, "the dilated kernel");
  const int64_t outputs = o >= 1 ? checked_extent(o, s, "the output positions (stride)") : 0;
  EMBER_CHECK_VALUE(n + p < kMaxExtent && outputs + window < kMaxExtent, "the padded ", axis, " extent is too large: "
                    "input ", n, ", padding ", p, ", output ", o, " x stride ", s, ", kernel ", k, " x dilation ", d,
                    " (geometry extents must be below 2**62)");
}

// ------------------------------------------------------------------ conv2d

ember::conv2d::Geometry conv_geometry(const py::array& x, const py::array& w, const py::array& y, int64_t sh,
                                      int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  EMBER_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got (", sh, ", ", sw, ")");
  EMBER_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got (", dh, ", ", dw, ")");
  EMBER_CHECK_VALUE(pt >= 0 && pl >= 0, "padding must be >= 0, got (", pt, ", ", pl, ")");
  EMBER_CHECK_VALUE(groups >= 1, "groups must be >= 1, got ", groups);
  check_axis(x.shape(2), y.shape(2), w.shape(2), sh, pt, dh, "height");
  check_axis(x.shape(3), y.shape(3), w.shape(3), sw, pl, dw, "width");
  ember::conv2d::Geometry g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), y.shape(2), y.shape(3),
                            w.shape(2), w.shape(3), sh, sw, pt, pl, dh, dw, groups};
  EMBER_CHECK_VALUE(g.c % groups == 0 && g.o % groups == 0, "groups=", groups,
                    " must divide the input channels (", g.c, ") and the output channels (", g.o, ")");
  EMBER_CHECK_VALUE(w.shape(1) * groups == g.c, "weight has shape ", shape_str(w), ": dimension 1 must be ",
                    g.c / groups, " (input channels ", g.c, " / groups ", groups, ")");
  EMBER_CHECK_VALUE(y.shape(0) == g.n && y.shape(1) == g.o, "output has shape ", shape_str(y), ": expected (", g.n,
                    ", ", g.o, ", OH, OW)");
  return g;
}

template <bool Ref, class T>
void py_conv2d_fwd_t(const py::handle& x_obj, const py::handle& w_obj, const py::handle& bias_obj,
                   const py::handle& y_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw,
                   int64_t groups, bool relu) {
  py::array x = expect_dense<T>(x_obj, "input", {-1, -1, -1, -1});
  py::array w = expect_dense<T>(w_obj, "weight", {-1, -1, -1, -1});
  py::array y = expect_dense<T>(y_obj, "out", {-1, -1, -1, -1}, true);
  const auto g = conv_geometry(x, w, y, sh, sw, pt, pl, dh, dw, groups);
  EMBER_CHECK_VALUE(!overlaps(y, x) && !overlaps(y, w), "out must not share memory with input or weight");
  const T* bias = nullptr;
  py::array b;
  if (!bias_obj.is_none()) {
    b = expect_dense<T>(bias_obj, "bias", {g.o});
    bias = static_cast<const T*>(b.data());
  }
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  const T* xp = static_cast<const T*>(x.data());
  const T* wp = static_cast<const T*>(w.data());
  T* yp = static_cast<T*>(y.mutable_data());
  if constexpr (Ref)
    ember::conv2d::conv2d_fwd_ref(g, xp, wp, bias, relu, yp);
  else
    ember::conv2d::conv2d_fwd(g, xp, wp, bias, relu, yp, isa, nt);
}

template <bool Ref>
void py_conv2d_fwd(const py::handle& x_obj, const py::handle& w_obj, const py::handle& bias_obj, const py::handle& y_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups, bool relu) {
  if (is_f64<Ref>(x_obj, "input", "conv2d_fwd")) return py_conv2d_fwd_t<true, double>(x_obj, w_obj, bias_obj, y_obj, sh, sw, pt, pl, dh, dw, groups, relu);
  py_conv2d_fwd_t<Ref, float>(x_obj, w_obj, bias_obj, y_obj, sh, sw, pt, pl, dh, dw, groups, relu);
}

template <bool Ref, class T>
void py_conv2d_bwd_data_t(const py::handle& dy_obj, const py::handle& w_obj, const py::handle& dx_obj, int64_t sh,
                            int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  py::array dy = expect_dense<T>(dy_obj, "grad_output", {-1, -1, -1, -1});
  py::array w = expect_dense<T>(w_obj, "weight", {-1, -1, -1, -1});
  py::array dx = expect_dense<T>(dx_obj, "out", {-1, -1, -1, -1}, true);
  const auto g = conv_geometry(dx, w, dy, sh, sw, pt, pl, dh, dw, groups);
  EMBER_CHECK_VALUE(!overlaps(dx, dy) && !overlaps(dx, w), "out must not share memory with grad_output or weight");
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  const T* dyp = static_cast<const T*>(dy.data());
  const T* wp = static_cast<const T*>(w.data());
  T* dxp = static_cast<T*>(dx.mutable_data());
  if constexpr (Ref)
    ember::conv2d::conv2d_bwd_data_ref(g, dyp, wp, dxp);
  else
    ember::conv2d::conv2d_bwd_data(g, dyp, wp, dxp, isa, nt);
}

template <bool Ref>
void py_conv2d_bwd_data(const py::handle& dy_obj, const py::handle& w_obj, const py::handle& dx_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  if (is_f64<Ref>(dy_obj, "grad_output", "conv2d_bwd_data")) return py_conv2d_bwd_data_t<true, double>(dy_obj, w_obj, dx_obj, sh, sw, pt, pl, dh, dw, groups);
  py_conv2d_bwd_data_t<Ref, float>(dy_obj, w_obj, dx_obj, sh, sw, pt, pl, dh, dw, groups);
}

template <bool Ref, class T>
void py_conv2d_bwd_weight_t(const py::handle& x_obj, const py::handle& dy_obj, const py::handle& dw_obj,
                              const py::handle& db_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh,
                              int64_t dw, int64_t groups) {
  py::array x = expect_dense<T>(x_obj, "input", {-1, -1, -1, -1});
  py::array dy = expect_dense<T>(dy_obj, "grad_output", {-1, -1, -1, -1});
  py::array dwt = expect_dense<T>(dw_obj, "out", {-1, -1, -1, -1}, true);
  const auto g = conv_geometry(x, dwt, dy, sh, sw, pt, pl, dh, dw, groups);
  EMBER_CHECK_VALUE(!overlaps(dwt, x) && !overlaps(dwt, dy), "out must not share memory with input or grad_output");
  T* db = nullptr;
  py::array dba;
  if (!db_obj.is_none()) {
    dba = expect_dense<T>(db_obj, "out_bias", {g.o}, true);
    db = static_cast<T*>(dba.mutable_data());
  }
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  const T* xp = static_cast<const T*>(x.data());
  const T* dyp = static_cast<const T*>(dy.data());
  T* dwp = static_cast<T*>(dwt.mutable_data());
  if constexpr (Ref)
    ember::conv2d::conv2d_bwd_weight_ref(g, xp, dyp, dwp, db);
  else
    ember::conv2d::conv2d_bwd_weight(g, xp, dyp, dwp, db, isa, nt);
}

template <bool Ref>
void py_conv2d_bwd_weight(const py::handle& x_obj, const py::handle& dy_obj, const py::handle& dw_obj, const py::handle& db_obj, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  if (is_f64<Ref>(x_obj, "input", "conv2d_bwd_weight")) return py_conv2d_bwd_weight_t<true, double>(x_obj, dy_obj, dw_obj, db_obj, sh, sw, pt, pl, dh, dw, groups);
  py_conv2d_bwd_weight_t<Ref, float>(x_obj, dy_obj, dw_obj, db_obj, sh, sw, pt, pl, dh, dw, groups);
}

// ------------------------------------------------------------------ softmax cross-entropy

// The problem of z (B x V) with hard targets (int64, B) or soft ones
// (float32, B x V), checked: every hard target is a class or ignore_index.
template <class T>
ember::cross_entropy::ProblemT<T> xent_problem(const py::array& z, const py::handle& target_obj, const py::handle& weight_obj,
                                  double eps, int64_t ignore_index, py::array& target, py::array& weight) {
  const int64_t b = z.shape(0), v = z.shape(1);
  EMBER_CHECK_VALUE(v >= 1, "logits must have at least one class, got shape ", shape_str(z));
  EMBER_CHECK_VALUE(eps >= 0.0 && eps <= 1.0, "label_smoothing must be in [0, 1], got ", eps);
  ember::cross_entropy::ProblemT<T> p{b, v, static_cast<const T*>(z.data()), nullptr, nullptr, nullptr,
                             static_cast<float>(eps), ignore_index};
  if (py::isinstance<py::array>(target_obj) && py::reinterpret_borrow<py::array>(target_obj).ndim() == 2) {
    target = expect_dense<T>(target_obj, "target", {b, v});
    p.soft = static_cast<const T*>(target.data());
  } else {
    target = expect_dense<int64_t>(target_obj, "target", {b});
    p.target = static_cast<const int64_t*>(target.data());
    for (int64_t r = 0; r < b; ++r) {
      const int64_t c = p.target[r];
      EMBER_CHECK_VALUE((c >= 0 && c < v) || c == ignore_index, "target[", r, "] = ", c,
                        " is neither a class in [0, ", v, ") nor ignore_index (", ignore_index, ")");
    }
  }
  if (!weight_obj.is_none()) {
    weight = expect_dense<T>(weight_obj, "weight", {v});
    p.weight = static_cast<const T*>(weight.data());
  }
  return p;
}

template <bool Ref, class T>
void py_xent_fwd_t(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps,
                 int64_t ignore_index, const py::handle& lse_obj, const py::handle& nll_obj,
                 const py::handle& smooth_obj) {
  py::array z = expect_dense<T>(z_obj, "logits", {-1, -1});
  py::array target, weight;
  const auto p = xent_problem<T>(z, target_obj, weight_obj, eps, ignore_index, target, weight);
  py::array lse = expect_dense<double>(lse_obj, "out_lse", {p.b}, true);
  py::array nll = expect_dense<double>(nll_obj, "out_nll", {p.b}, true);
  py::array smooth = expect_dense<double>(smooth_obj, "out_smooth", {p.b}, true);
  const ember::cross_entropy::RowLosses out{static_cast<double*>(lse.mutable_data()), static_cast<double*>(nll.mutable_data()),
                                   static_cast<double*>(smooth.mutable_data())};
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  if constexpr (Ref)
    ember::cross_entropy::cross_entropy_fwd_ref(p, out);
  else
    ember::cross_entropy::cross_entropy_fwd(p, out, isa, nt);
}

template <bool Ref>
void py_xent_fwd(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps, int64_t ignore_index, const py::handle& lse_obj, const py::handle& nll_obj, const py::handle& smooth_obj) {
  if (is_f64<Ref>(z_obj, "logits", "xent_fwd")) return py_xent_fwd_t<true, double>(z_obj, target_obj, weight_obj, eps, ignore_index, lse_obj, nll_obj, smooth_obj);
  py_xent_fwd_t<Ref, float>(z_obj, target_obj, weight_obj, eps, ignore_index, lse_obj, nll_obj, smooth_obj);
}

template <bool Ref, class T>
void py_xent_bwd_t(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps,
                 int64_t ignore_index, const py::handle& lse_obj, const py::handle& scale_obj,
                 const py::handle& dz_obj) {
  py::array z = expect_dense<T>(z_obj, "logits", {-1, -1});
  py::array target, weight;
  const auto p = xent_problem<T>(z, target_obj, weight_obj, eps, ignore_index, target, weight);
  py::array lse = expect_dense<double>(lse_obj, "lse", {p.b});
  py::array scale = expect_dense<T>(scale_obj, "scale", {p.b});
  py::array dz = expect_dense<T>(dz_obj, "out", {p.b, p.v}, true);
  // dz may be the logits themselves (in place), but no other input.
  EMBER_CHECK_VALUE(dz.data() == z.data() || !overlaps(dz, z), "out must be the logits array itself or not overlap it");
  EMBER_CHECK_VALUE(!overlaps(dz, target) && !overlaps(dz, weight),
                    "out must not share memory with target or weight");
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  const double* lp = static_cast<const double*>(lse.data());
  const T* sp = static_cast<const T*>(scale.data());
  T* dp = static_cast<T*>(dz.mutable_data());
  if constexpr (Ref)
    ember::cross_entropy::cross_entropy_bwd_ref(p, lp, sp, dp);
  else
    ember::cross_entropy::cross_entropy_bwd(p, lp, sp, dp, isa, nt);
}

template <bool Ref>
void py_xent_bwd(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps, int64_t ignore_index, const py::handle& lse_obj, const py::handle& scale_obj, const py::handle& dz_obj) {
  if (is_f64<Ref>(z_obj, "logits", "xent_bwd")) return py_xent_bwd_t<true, double>(z_obj, target_obj, weight_obj, eps, ignore_index, lse_obj, scale_obj, dz_obj);
  py_xent_bwd_t<Ref, float>(z_obj, target_obj, weight_obj, eps, ignore_index, lse_obj, scale_obj, dz_obj);
}

// ------------------------------------------------------------------ optimizer steps

// A float32 C-contiguous array of `n` elements (any shape), writable if asked.
py::array expect_flat(const py::handle& obj, const char* name, int64_t n, bool writable) {
  EMBER_CHECK_TYPE(py::isinstance<py::array>(obj), name, " must be a numpy.ndarray of float32, got ", type_name(obj));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  EMBER_CHECK_TYPE(arr.dtype().is(py::dtype::of<float>()), name, " must have dtype float32, got ",
                   std::string(py::str(arr.dtype())));
  EMBER_CHECK_VALUE(n < 0 || arr.size() == n, name, " has ", arr.size(), " elements, the parameter has ", n);
  const int flags = py::detail::array_proxy(arr.ptr())->flags;
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_, name, " must be C-contiguous");
  if (writable) EMBER_CHECK_VALUE(arr.writeable(), name, " is read-only");
  return arr;
}

template <bool Ref>
void py_adam_step(const py::handle& p_obj, const py::handle& g_obj, const py::handle& m_obj, const py::handle& v_obj,
                  const py::handle& vmax_obj, double lr, double beta1, double beta2, double eps, double weight_decay,
                  int64_t step, bool decoupled, bool maximize) {
  py::array p = expect_flat(p_obj, "param", -1, true);
  const int64_t n = p.size();
  py::array g = expect_flat(g_obj, "grad", n, false);
  py::array m = expect_flat(m_obj, "exp_avg", n, true);
  py::array v = expect_flat(v_obj, "exp_avg_sq", n, true);
  py::array vmax;
  if (!vmax_obj.is_none()) vmax = expect_flat(vmax_obj, "max_exp_avg_sq", n, true);
  EMBER_CHECK_VALUE(step >= 1, "step must be >= 1, got ", step);
  const py::array* arrays[] = {&p, &g, &m, &v, &vmax};
  for (int i = 0; i < 5; ++i)
    for (int j = i + 1; j < 5; ++j)
      EMBER_CHECK_VALUE(!overlaps(*arrays[i], *arrays[j]), "param, grad and the optimizer state must not share memory");
  ember::optim_step::AdamTensor a{n, static_cast<float*>(p.mutable_data()), static_cast<const float*>(g.data()),
                           static_cast<float*>(m.mutable_data()), static_cast<float*>(v.mutable_data()),
                           vmax_obj.is_none() ? nullptr : static_cast<float*>(vmax.mutable_data()), step};
  ember::optim_step::AdamHyper h{static_cast<float>(lr), static_cast<float>(beta1), static_cast<float>(beta2),
                           static_cast<float>(eps), static_cast<float>(weight_decay), decoupled, maximize};
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  if (Ref)
    ember::optim_step::adam_step_ref(h, &a, 1);
  else
    ember::optim_step::adam_step(h, &a, 1, ember::active_isa(), nt);
}

template <bool Ref>
void py_sgd_step(const py::handle& p_obj, const py::handle& g_obj, const py::handle& buf_obj, double lr,
                 double momentum, double dampening, double weight_decay, bool nesterov, bool maximize, bool first) {
  py::array p = expect_flat(p_obj, "param", -1, true);
  const int64_t n = p.size();
  py::array g = expect_flat(g_obj, "grad", n, false);
  py::array buf;
  if (!buf_obj.is_none()) buf = expect_flat(buf_obj, "momentum_buffer", n, true);
  EMBER_CHECK_VALUE(!overlaps(p, g) && !overlaps(p, buf) && !overlaps(g, buf),
                    "param, grad and the momentum buffer must not share memory");
  ember::optim_step::SgdTensor a{n, static_cast<float*>(p.mutable_data()), static_cast<const float*>(g.data()),
                          buf_obj.is_none() ? nullptr : static_cast<float*>(buf.mutable_data())};
  ember::optim_step::SgdHyper h{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(dampening),
                          static_cast<float>(weight_decay), nesterov, maximize, first};
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  if (Ref)
    ember::optim_step::sgd_step_ref(h, &a, 1);
  else
    ember::optim_step::sgd_step(h, &a, 1, ember::active_isa(), nt);
}

// ------------------------------------------------------------------ pool2d

ember::pool2d::Geometry pool_geometry(const py::array& x, const py::array& y, int64_t kh, int64_t kw, int64_t sh,
                                      int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  EMBER_CHECK_VALUE(kh >= 1 && kw >= 1, "kernel_size must be >= 1, got (", kh, ", ", kw, ")");
  EMBER_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got (", sh, ", ", sw, ")");
  EMBER_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got (", dh, ", ", dw, ")");
  EMBER_CHECK_VALUE(ph >= 0 && pw >= 0, "padding must be >= 0, got (", ph, ", ", pw, ")");
  EMBER_CHECK_VALUE(y.shape(0) == x.shape(0) && y.shape(1) == x.shape(1), "output has shape ", shape_str(y),
                    " but input has shape ", shape_str(x), ": N and C must agree");
  check_axis(x.shape(2), y.shape(2), kh, sh, ph, dh, "height");
  check_axis(x.shape(3), y.shape(3), kw, sw, pw, dw, "width");
  return {x.shape(0) * x.shape(1), x.shape(2), x.shape(3), y.shape(2), y.shape(3), kh, kw, sh, sw, ph, pw, dh, dw};
}

// PyTorch's pooling output size along one axis, floor or ceil mode.
// (128-bit arithmetic: the extents are below 2^62, their sums are not.)
int64_t pool_out(int64_t size, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  using wide = __int128;
  const wide num = wide(size) + 2 * wide(pad) - wide(dil) * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  wide out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= wide(size) + pad) --out;
  return out > INT64_MAX ? INT64_MAX : static_cast<int64_t>(out);
}

// The output plane must be what the window geometry gives (floor or ceil mode).
void check_pool_output(const ember::pool2d::Geometry& g) {
  for (bool ceil_mode : {false, true})
    if (g.oh == pool_out(g.h, g.kh, g.ph, g.sh, g.dh, ceil_mode) &&
        g.ow == pool_out(g.w, g.kw, g.pw, g.sw, g.dw, ceil_mode))
      return;
  throw std::invalid_argument(concat("output plane ", g.oh, "x", g.ow, " does not match input plane ", g.h, "x",
                                     g.w, " pooled by ", g.kh, "x", g.kw, " windows (stride ", g.sh, "x", g.sw,
                                     ", padding ", g.ph, "x", g.pw, ", dilation ", g.dh, "x", g.dw, ")"));
}

// Every index must point into its plane, or backward would write out of bounds.
void check_indices(const py::array& idx, int64_t plane_size) {
  const int64_t* p = static_cast<const int64_t*>(idx.data());
  for (py::ssize_t e = 0; e < idx.size(); ++e)
    EMBER_CHECK_VALUE(p[e] >= 0 && p[e] < plane_size, "indices[", e, "] = ", p[e],
                      " is outside the input plane (0 <= index < ", plane_size, ")");
}

// Ref = true runs the plain-loop oracle, false the fast path; the checks are shared.
template <bool Ref, class T>
void py_max_pool2d_fwd_t(const py::handle& x_obj, const py::handle& y_obj, const py::handle& idx_obj, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  py::array x = expect_dense<T>(x_obj, "input", {-1, -1, -1, -1});
  py::array y = expect_dense<T>(y_obj, "out", {-1, -1, -1, -1}, true);
  const auto g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, dh, dw);
  check_pool_output(g);
  EMBER_CHECK_VALUE(!overlaps(y, x), "out must not share memory with input");
  int64_t* idx = nullptr;
  py::array ia;
  if (!idx_obj.is_none()) {
    ia = expect_dense<int64_t>(idx_obj, "out_indices", {y.shape(0), y.shape(1), g.oh, g.ow}, true);
    EMBER_CHECK_VALUE(!overlaps(ia, x) && !overlaps(ia, y), "out_indices must not share memory with input or out");
    idx = static_cast<int64_t*>(ia.mutable_data());
  }
  const int nt = ember::get_num_threads();
  const ember::Isa isa = ember::active_isa();
  py::gil_scoped_release release;
  const T* xp = static_cast<const T*>(x.data());
  T* yp = static_cast<T*>(y.mutable_data());
  if constexpr (Ref)
    ember::pool2d::max_pool2d_fwd_ref(g, xp, yp, idx);
  else
    ember::pool2d::max_pool2d_fwd(g, xp, yp, idx, isa, nt);
}

template <bool Ref>
void py_max_pool2d_fwd(const py::handle& x_obj, const py::handle& y_obj, const py::handle& idx_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  if (is_f64<Ref>(x_obj, "input", "max_pool2d_fwd")) return py_max_pool2d_fwd_t<true, double>(x_obj, y_obj, idx_obj, kh, kw, sh, sw, ph, pw, dh, dw);
  py_max_pool2d_fwd_t<Ref, float>(x_obj, y_obj, idx_obj, kh, kw, sh, sw, ph, pw, dh, dw);
}

template <bool Ref, class T>
void py_max_pool2d_bwd_t(const py::handle& dy_obj, const py::handle& idx_obj, const py::handle& dx_obj) {
  py::array dx = expect_dense<T>(dx_obj, "out", {-1, -1, -1, -1}, true);
  py::array dy = expect_dense<T>(dy_obj, "grad_output", {dx.shape(0), dx.shape(1), -1, -1});
  py::array idx = expect_dense<int64_t>(idx_obj, "indices", {dy.shape(0), dy.shape(1), dy.shape(2), dy.shape(3)});
  check_indices(idx, dx.shape(2) * dx.shape(3));
  EMBER_CHECK_VALUE(!overlaps(dx, dy) && !overlaps(dx, idx), "out must not share memory with grad_output or indices");
  const auto g = pool_geometry(dx, dy, 1, 1, 1, 1, 0, 0, 1, 1);
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  const T* dyp = static_cast<const T*>(dy.data());
  const int64_t* ip = static_cast<const int64_t*>(idx.data());
  T* dxp = static_cast<T*>(dx.mutable_data());
  if constexpr (Ref)
    ember::pool2d::max_pool2d_bwd_ref(g, dyp, ip, dxp);
  else
    ember::pool2d::max_pool2d_bwd(g, dyp, ip, dxp, nt);
}

template <bool Ref>
void py_max_pool2d_bwd(const py::handle& dy_obj, const py::handle& idx_obj, const py::handle& dx_obj) {
  if (is_f64<Ref>(dy_obj, "grad_output", "max_pool2d_bwd")) return py_max_pool2d_bwd_t<true, double>(dy_obj, idx_obj, dx_obj);
  py_max_pool2d_bwd_t<Ref, float>(dy_obj, idx_obj, dx_obj);
}

template <bool Ref, class T>
void py_avg_pool2d_fwd_t(const py::handle& x_obj, const py::handle& y_obj, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, bool count_include_pad) {
  py::array x = expect_dense<T>(x_obj, "input", {-1, -1, -1, -1});
  py::array y = expect_dense<T>(y_obj, "out", {-1, -1, -1, -1}, true);
  const auto g = pool_geometry(x, y, kh, kw, sh, sw, ph, pw, 1, 1);
  check_pool_output(g);
  EMBER_CHECK_VALUE(!overlaps(y, x), "out must not share memory with input");
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  const T* xp = static_cast<const T*>(x.data());
  T* yp = static_cast<T*>(y.mutable_data());
  if constexpr (Ref)
    ember::pool2d::avg_pool2d_fwd_ref(g, count_include_pad, xp, yp);
  else
    ember::pool2d::avg_pool2d_fwd(g, count_include_pad, xp, yp, nt);
}

template <bool Ref>
void py_avg_pool2d_fwd(const py::handle& x_obj, const py::handle& y_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool count_include_pad) {
  if (is_f64<Ref>(x_obj, "input", "avg_pool2d_fwd")) return py_avg_pool2d_fwd_t<true, double>(x_obj, y_obj, kh, kw, sh, sw, ph, pw, count_include_pad);
  py_avg_pool2d_fwd_t<Ref, float>(x_obj, y_obj, kh, kw, sh, sw, ph, pw, count_include_pad);
}

template <bool Ref, class T>
void py_avg_pool2d_bwd_t(const py::handle& dy_obj, const py::handle& dx_obj, int64_t kh, int64_t kw, int64_t sh,
                           int64_t sw, int64_t ph, int64_t pw, bool count_include_pad) {
  py::array dx = expect_dense<T>(dx_obj, "out", {-1, -1, -1, -1}, true);
  py::array dy = expect_dense<T>(dy_obj, "grad_output", {dx.shape(0), dx.shape(1), -1, -1});
  const auto g = pool_geometry(dx, dy, kh, kw, sh, sw, ph, pw, 1, 1);
  check_pool_output(g);
  EMBER_CHECK_VALUE(!overlaps(dx, dy), "out must not share memory with grad_output");
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  const T* dyp = static_cast<const T*>(dy.data());
  T* dxp = static_cast<T*>(dx.mutable_data());
  if constexpr (Ref)
    ember::pool2d::avg_pool2d_bwd_ref(g, count_include_pad, dyp, dxp);
  else
    ember::pool2d::avg_pool2d_bwd(g, count_include_pad, dyp, dxp, nt);
}

template <bool Ref>
void py_avg_pool2d_bwd(const py::handle& dy_obj, const py::handle& dx_obj, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool count_include_pad) {
  if (is_f64<Ref>(dy_obj, "grad_output", "avg_pool2d_bwd")) return py_avg_pool2d_bwd_t<true, double>(dy_obj, dx_obj, kh, kw, sh, sw, ph, pw, count_include_pad);
  py_avg_pool2d_bwd_t<Ref, float>(dy_obj, dx_obj, kh, kw, sh, sw, ph, pw, count_include_pad);
}

template <bool Ref, class T>
void py_adaptive_avg_pool2d_fwd_t(const py::handle& x_obj, const py::handle& y_obj) {
  py::array x = expect_dense<T>(x_obj, "input", {-1, -1, -1, -1});
  py::array y = expect_dense<T>(y_obj, "out", {x.shape(0), x.shape(1), -1, -1}, true);
  EMBER_CHECK_VALUE(y.shape(2) >= 1 && y.shape(3) >= 1, "output_size must be >= 1");
  EMBER_CHECK_VALUE(x.shape(2) >= 1 && x.shape(3) >= 1, "input has shape ", shape_str(x),
                    ": adaptive pooling needs a non-empty H x W plane (an empty one has no mean)");
  EMBER_CHECK_VALUE(!overlaps(y, x), "out must not share memory with input");
  const auto g = pool_geometry(x, y, 1, 1, 1, 1, 0, 0, 1, 1);
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  const T* xp = static_cast<const T*>(x.data());
  T* yp = static_cast<T*>(y.mutable_data());
  if constexpr (Ref)
    ember::pool2d::adaptive_avg_pool2d_fwd_ref(g, xp, yp);
  else
    ember::pool2d::adaptive_avg_pool2d_fwd(g, xp, yp, nt);
}

template <bool Ref>
void py_adaptive_avg_pool2d_fwd(const py::handle& x_obj, const py::handle& y_obj) {
  if (is_f64<Ref>(x_obj, "input", "adaptive_avg_pool2d_fwd")) return py_adaptive_avg_pool2d_fwd_t<true, double>(x_obj, y_obj);
  py_adaptive_avg_pool2d_fwd_t<Ref, float>(x_obj, y_obj);
}

template <bool Ref, class T>
void py_adaptive_avg_pool2d_bwd_t(const py::handle& dy_obj, const py::handle& dx_obj) {
  py::array dx = expect_dense<T>(dx_obj, "out", {-1, -1, -1, -1}, true);
  py::array dy = expect_dense<T>(dy_obj, "grad_output", {dx.shape(0), dx.shape(1), -1, -1});
  EMBER_CHECK_VALUE(dy.shape(2) >= 1 && dy.shape(3) >= 1, "grad_output must have an output size >= 1");
  EMBER_CHECK_VALUE(dx.shape(2) >= 1 && dx.shape(3) >= 1, "out has shape ", shape_str(dx),
                    ": adaptive pooling needs a non-empty H x W plane");
  EMBER_CHECK_VALUE(!overlaps(dx, dy), "out must not share memory with grad_output");
  const auto g = pool_geometry(dx, dy, 1, 1, 1, 1, 0, 0, 1, 1);
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  const T* dyp = static_cast<const T*>(dy.data());
  T* dxp = static_cast<T*>(dx.mutable_data());
  if constexpr (Ref)
    ember::pool2d::adaptive_avg_pool2d_bwd_ref(g, dyp, dxp);
  else
    ember::pool2d::adaptive_avg_pool2d_bwd(g, dyp, dxp, nt);
}

template <bool Ref>
void py_adaptive_avg_pool2d_bwd(const py::handle& dy_obj, const py::handle& dx_obj) {
  if (is_f64<Ref>(dy_obj, "grad_output", "adaptive_avg_pool2d_bwd")) return py_adaptive_avg_pool2d_bwd_t<true, double>(dy_obj, dx_obj);
  py_adaptive_avg_pool2d_bwd_t<Ref, float>(dy_obj, dx_obj);
}

// Elementwise ops: every array float32, or every one float64, C-contiguous and of one shape;
// out may be an input itself (elementwise, so in place is exact) but may not partly overlap one.
bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

template <class Run>
void eltwise_call(const char* op, std::initializer_list<std::pair<const char*, py::handle>> inputs,
                  const py::handle& out_obj, Run&& run) {
  std::vector<py::array> arrays;
  const py::dtype f32 = py::dtype::of<float>(), f64 = py::dtype::of<double>();
  for (const auto& [name, obj] : inputs) {
    EMBER_CHECK_TYPE(py::isinstance<py::array>(obj), op, ": ", name, " must be a numpy.ndarray, got ",
                     type_name(obj));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    EMBER_CHECK_TYPE(arr.dtype().is(f32) || arr.dtype().is(f64), op, ": ", name,
                     " must have dtype float32 or float64, got ", std::string(py::str(arr.dtype())));
    if (!arrays.empty()) {
      EMBER_CHECK_TYPE(arr.dtype().is(arrays[0].dtype()), op, ": ", name, " has dtype ",
                       std::string(py::str(arr.dtype())), " but ", inputs.begin()->first, " has ",
                       std::string(py::str(arrays[0].dtype())));
      EMBER_CHECK_VALUE(same_shape(arr, arrays[0]), op, ": ", name, " has shape ", shape_str(arr), " but ",
                        inputs.begin()->first, " has shape ", shape_str(arrays[0]));
    }
    const int flags = py::detail::array_proxy(arr.ptr())->flags;
    EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_, op, ": ", name, " must be C-contiguous");
    EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_, op, ": ", name, " must be aligned");
    arrays.push_back(arr);
  }
  EMBER_CHECK_TYPE(py::isinstance<py::array>(out_obj), op, ": out must be a numpy.ndarray, got ", type_name(out_obj));
  py::array out = py::reinterpret_borrow<py::array>(out_obj);
  EMBER_CHECK_TYPE(out.dtype().is(arrays[0].dtype()), op, ": out has dtype ", std::string(py::str(out.dtype())),
                   " but ", inputs.begin()->first, " has ", std::string(py::str(arrays[0].dtype())));
  EMBER_CHECK_VALUE(same_shape(out, arrays[0]), op, ": out has shape ", shape_str(out), " but ",
                    inputs.begin()->first, " has shape ", shape_str(arrays[0]));
  const int flags = py::detail::array_proxy(out.ptr())->flags;
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_, op, ": out must be C-contiguous");
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_, op, ": out must be aligned");
  EMBER_CHECK_VALUE(out.writeable(), op, ": out is read-only");
  for (const py::array& a : arrays)
    EMBER_CHECK_VALUE(a.data() == out.data() || !overlaps(a, out), op,
                      ": out partly overlaps an input (in place is allowed, other overlaps are not)");
  const bool is_f32 = out.dtype().is(f32);
  std::vector<const void*> in;
  for (const py::array& a : arrays) in.push_back(a.data());
  void* o = out.mutable_data();
  const int64_t n = out.size();
  const int nt = ember::get_num_threads();
  py::gil_scoped_release release;
  if (is_f32)
    run(static_cast<float*>(nullptr), in, o, n, nt);
  else
    run(static_cast<double*>(nullptr), in, o, n, nt);
}

void py_relu(const py::handle& x, const py::handle& out) {
  eltwise_call("relu", {{"input", x}}, out, [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ember::eltwise::relu_fwd(static_cast<const T*>(in[0]), static_cast<T*>(o), n, nt);
  });
}

void py_relu_backward(const py::handle& g, const py::handle& y, const py::handle& out) {
  eltwise_call("relu_backward", {{"grad_output", g}, {"output", y}}, out,
               [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
                 using T = std::remove_pointer_t<decltype(tag)>;
                 ember::eltwise::relu_bwd(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]),
                                          static_cast<T*>(o), n, nt);
               });
}

void py_erf(const py::handle& x, const py::handle& out) {
  eltwise_call("erf", {{"input", x}}, out, [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ember::eltwise::erf(static_cast<const T*>(in[0]), static_cast<T*>(o), n, nt);
  });
}

// ---------------------------------------------------------------- quantized matmul
// A packed-weight array: any shape, C-contiguous, of `dtype`, exactly `count` elements.
py::array expect_packed(const py::handle& obj, const char* name, const py::dtype& dtype, const char* dtype_name,
                        int64_t count) {
  EMBER_CHECK_TYPE(py::isinstance<py::array>(obj), "qmatmul: ", name, " must be a numpy.ndarray of ", dtype_name,
                   ", got ", type_name(obj));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  EMBER_CHECK_TYPE(arr.dtype().is(dtype), "qmatmul: ", name, " must have dtype ", dtype_name, ", got ",
                   std::string(py::str(arr.dtype())));
  const int flags = py::detail::array_proxy(arr.ptr())->flags;
  EMBER_CHECK_VALUE(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_, "qmatmul: ", name, " must be C-contiguous");
  EMBER_CHECK_VALUE(arr.size() == count, "qmatmul: ", name, " has ", arr.size(), " elements; the packed layout of this ",
                    "shape needs ", count, " (was it packed for another shape or group size?)");
  return arr;
}

struct QCall {
  py::array x, out, bias;
  bool has_bias = false;
  int64_t m = 0;
};

// x (M x K float32, unit column stride), bias (N float32 or None), out (M x N float32, unit column
// stride, writable, apart from x), checked against the weight's n and k.
QCall qmatmul_args(const py::handle& x_obj, const py::handle& bias_obj, const py::handle& out_obj, int64_t n,
                   int64_t k) {
  QCall c;
  EMBER_CHECK_VALUE(n >= 1 && k >= 1 && k <= 65536, "qmatmul: the weight's shape must have 1 <= N and "
                    "1 <= K <= 65536, got N=", n, ", K=", k);
  c.x = expect_f32(x_obj, "input", 2);
  EMBER_CHECK_VALUE(c.x.shape(1) == k, "qmatmul: input has K=", c.x.shape(1), " (shape ", shape_str(c.x),
                    ") but the weight was quantized for K=", k);
  // The kernels walk each row as contiguous: a strided or reversed row (even a single
  // one) must be copied by the caller.
  EMBER_CHECK_VALUE(c.x.shape(1) <= 1 || c.x.strides(1) == 4, "qmatmul: input must have unit column stride, got "
                    "strides (", c.x.strides(0), ", ", c.x.strides(1), ") bytes");
  c.m = c.x.shape(0);
  c.out = expect_f32(out_obj, "out", 2);
  EMBER_CHECK_VALUE(c.out.shape(0) == c.m && c.out.shape(1) == n, "qmatmul: out has shape ", shape_str(c.out),
                    ", expected (", c.m, ", ", n, ")");
  EMBER_CHECK_VALUE(n <= 1 || c.out.strides(1) == 4, "qmatmul: out must have unit column stride, got strides (",
                    c.out.strides(0), ", ", c.out.strides(1), ") bytes");
  EMBER_CHECK_VALUE(c.m <= 1 || std::abs(c.out.strides(0)) >= 4 * n, "qmatmul: out rows must not overlap: row "
                    "stride must be at least ", 4 * n, " bytes, got ", c.out.strides(0));
  EMBER_CHECK_VALUE(c.out.writeable(), "qmatmul: out is read-only");
  EMBER_CHECK_VALUE(!overlaps(c.out, c.x), "qmatmul: out must not share memory with input");
  if (!bias_obj.is_none()) {
    c.bias = expect_dense<float>(bias_obj, "bias", {n});
    c.has_bias = true;
    EMBER_CHECK_VALUE(!overlaps(c.out, c.bias), "qmatmul: out must not share memory with bias");
  }
  return c;
}

int64_t row_stride(const py::array& a) { return a.shape(0) > 1 ? a.strides(0) / 4 : a.shape(1); }

// Runs kernel(x, ldx, bias, out, ldy, threads) without the GIL; it returns false for a
// non-finite input, which becomes a ValueError.
template <class Kernel>
void run_qmatmul(QCall& c, Kernel&& kernel) {
  const float* xp = static_cast<const float*>(c.x.data());
  const float* bp = c.has_bias ? static_cast<const float*>(c.bias.data()) : nullptr;
  float* yp = static_cast<float*>(c.out.mutable_data());
  const int64_t ldx = row_stride(c.x), ldy = row_stride(c.out);
  const int nt = ember::get_num_threads();
  bool finite;
  {
    py::gil_scoped_release release;
    finite = kernel(xp, ldx, bp, yp, ldy, nt);
  }
  EMBER_CHECK_VALUE(finite, "qmatmul: input holds NaN or infinite values, which cannot be quantized");
}

template <bool Ref>
void py_qmatmul_int8(const py::handle& x_obj, const py::handle& data_obj, const py::handle& scales_obj,
                     const py::handle& colsum_obj, int64_t n, int64_t k, const py::handle& bias_obj,
                     const py::handle& out_obj) {
  QCall c = qmatmul_args(x_obj, bias_obj, out_obj, n, k);
  const int64_t np16 = (n + 15) / 16 * 16, kp = (k + 3) / 4 * 4;
  py::array data = expect_packed(data_obj, "weight data", py::dtype::of<int8_t>(), "int8", np16 * kp);
  py::array scales = expect_packed(scales_obj, "scales", py::dtype::of<float>(), "float32", np16);
  py::array colsum = expect_packed(colsum_obj, "colsum", py::dtype::of<int32_t>(), "int32", np16);
  ember::qmatmul::Int8Weight w{n, k, kp, static_cast<const int8_t*>(data.data()),
                               static_cast<const float*>(scales.data()), static_cast<const int32_t*>(colsum.data())};
  run_qmatmul(c, [&](const float* xp, int64_t ldx, const float* bp, float* yp, int64_t ldy, int nt) {
    return Ref ? ember::qmatmul::qmatmul_int8_ref(xp, c.m, ldx, w, bp, yp, ldy)
               : ember::qmatmul::qmatmul_int8(xp, c.m, ldx, w, bp, yp, ldy, ember::active_isa(), nt);
  });
}

template <bool Ref>
void py_qmatmul_int4(const py::handle& x_obj, const py::handle& data_obj, const py::handle& scales_obj, int64_t n,
                     int64_t k, int64_t group, const py::handle& bias_obj, const py::handle& out_obj) {
  EMBER_CHECK_VALUE(group >= 8 && group % 8 == 0 && group <= 4096, "qmatmul: group_size must be a multiple of 8 "
                    "from 8 to 4096, got ", group);
  QCall c = qmatmul_args(x_obj, bias_obj, out_obj, n, k);
  const int64_t np16 = (n + 15) / 16 * 16, kp = (k + group - 1) / group * group;
  py::array data = expect_packed(data_obj, "weight data", py::dtype::of<uint8_t>(), "uint8", np16 * kp / 2);
  py::array scales = expect_packed(scales_obj, "scales", py::dtype::of<float>(), "float32", np16 * (kp / group));
  ember::qmatmul::Int4Weight w{n, k, group, kp, static_cast<const uint8_t*>(data.data()),
                               static_cast<const float*>(scales.data())};
  run_qmatmul(c, [&](const float* xp, int64_t ldx, const float* bp, float* yp, int64_t ldy, int nt) {
    return Ref ? ember::qmatmul::qmatmul_int4_ref(xp, c.m, ldx, w, bp, yp, ldy)
               : ember::qmatmul::qmatmul_int4(xp, c.m, ldx, w, bp, yp, ldy, ember::active_isa(), nt);
  });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Ember's CPU kernels";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ember::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  // Environment overrides are validated at import, so a typo fails loudly.
  ember::init_isa_from_env();
  ember::get_num_threads();
  m.attr("__version__") = EMBER_VERSION;

  const char* gemm_doc =
      "C = act(alpha * op(a) @ op(b) + beta * out + bias) over float32 arrays; op(x) is x.T when trans_x.\n"
      "Any input strides are read in place. out (M x N, unit column stride) is written in place when not\n"
      "None; beta != 0 requires it. Returns out. ember.ops.gemm is the keyword interface to this.";
  // Positional on purpose: ember.ops.gemm (Python) takes the keywords and
  // passes them on positionally, which pybind11 handles in half the time.
  m.def("gemm", &py_gemm, gemm_doc, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"),
        py::arg("beta"), py::arg("trans_a"), py::arg("trans_b"), py::arg("bias"), py::arg("relu"));
  m.def("gemm_ref", &py_gemm_ref, "The reference GEMM (plain loops, double accumulation); same arguments as gemm.",
        py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"), py::arg("beta"), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("bias"), py::arg("relu"));

  // Convolution and pooling (and their references); ember.ops validates the
  // parameters and allocates the outputs (see python/ember/_geometry.py).
  m.def("conv2d_fwd_ref", &py_conv2d_fwd<true>);
  m.def("conv2d_fwd", &py_conv2d_fwd<false>);
  m.def("conv2d_bwd_data_ref", &py_conv2d_bwd_data<true>);
  m.def("conv2d_bwd_data", &py_conv2d_bwd_data<false>);
  m.def("conv2d_bwd_weight_ref", &py_conv2d_bwd_weight<true>);
  m.def("conv2d_bwd_weight", &py_conv2d_bwd_weight<false>);
  m.def("relu", &py_relu, "out = maximum(input, 0) (NaN kept); float32 or float64, C-contiguous.",
        py::arg("input"), py::arg("out"));
  m.def("relu_backward", &py_relu_backward, "out = where(output > 0, grad_output, 0), output being relu's.",
        py::arg("grad_output"), py::arg("output"), py::arg("out"));
  m.def("erf", &py_erf, "out = erf(input); float32 or float64, C-contiguous.", py::arg("input"), py::arg("out"));
  m.def("qmatmul_int8", &py_qmatmul_int8<false>);
  m.def("qmatmul_int8_ref", &py_qmatmul_int8<true>);
  m.def("qmatmul_int4", &py_qmatmul_int4<false>);
  m.def("qmatmul_int4_ref", &py_qmatmul_int4<true>);
  m.def("adam_step", &py_adam_step<false>);
  m.def("adam_step_ref", &py_adam_step<true>);
  m.def("sgd_step", &py_sgd_step<false>);
  m.def("sgd_step_ref", &py_sgd_step<true>);
  m.def("xent_fwd_ref", &py_xent_fwd<true>);
  m.def("xent_fwd", &py_xent_fwd<false>);
  m.def("xent_bwd_ref", &py_xent_bwd<true>);
  m.def("xent_bwd", &py_xent_bwd<false>);
  m.def("max_pool2d_fwd_ref", &py_max_pool2d_fwd<true>);
  m.def("max_pool2d_bwd_ref", &py_max_pool2d_bwd<true>);
  m.def("avg_pool2d_fwd_ref", &py_avg_pool2d_fwd<true>);
  m.def("avg_pool2d_bwd_ref", &py_avg_pool2d_bwd<true>);
  m.def("adaptive_avg_pool2d_fwd_ref", &py_adaptive_avg_pool2d_fwd<true>);
  m.def("adaptive_avg_pool2d_bwd_ref", &py_adaptive_avg_pool2d_bwd<true>);
  m.def("max_pool2d_fwd", &py_max_pool2d_fwd<false>);
  m.def("max_pool2d_bwd", &py_max_pool2d_bwd<false>);
  m.def("avg_pool2d_fwd", &py_avg_pool2d_fwd<false>);
  m.def("avg_pool2d_bwd", &py_avg_pool2d_bwd<false>);
  m.def("adaptive_avg_pool2d_fwd", &py_adaptive_avg_pool2d_fwd<false>);
  m.def("adaptive_avg_pool2d_bwd", &py_adaptive_avg_pool2d_bwd<false>);

  m.def("empty", &py_empty,
        "An uninitialised C-contiguous array. Arrays of 256 KiB and more reuse memory from a cache of\n"
        "freed blocks, so repeated same-sized allocations cost no page faults.",
        py::arg("shape"), py::arg("dtype"));
  m.attr("host_cache_min_bytes") = ember::host_cache::kMinBytes;
  m.def("host_cache_stats", [] {
    const auto s = ember::host_cache::stats();
    py::dict d;
    d["cached_bytes"] = s.cached_bytes;
    d["cached_blocks"] = s.cached_blocks;
    d["limit_bytes"] = s.limit_bytes;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    return d;
  });
  m.def("host_cache_clear", &ember::host_cache::clear, "Free every idle cached block.");
  m.def("host_cache_set_limit", [](int64_t bytes) {
    EMBER_CHECK_VALUE(bytes >= 0, "limit must be >= 0 bytes, got ", bytes);
    ember::host_cache::set_limit(static_cast<size_t>(bytes));
  }, "Set the most idle bytes the cache keeps (0 turns caching off).", py::arg("bytes"));

  m.def("get_num_threads", &ember::get_num_threads, "Threads the CPU kernels use.");
  m.def("set_num_threads", &ember::set_num_threads, "Set the threads the CPU kernels use (1..1024).",
        py::arg("n"));
  m.def("affinity_cpu_count", &ember::affinity_cpu_count, "CPUs in this process's affinity mask.");

  m.def("get_isa", [] { return std::string(ember::isa_name(ember::active_isa())); },
        "The instruction set the CPU kernels use.");
  m.def("set_isa", [](const std::string& name) { ember::set_active_isa(ember::parse_isa(name)); },
        "Force the kernels' instruction set: 'generic', 'avx2' or 'avx512' (must be supported).",
        py::arg("name"));
  m.def("best_isa", [] { return std::string(ember::isa_name(ember::best_isa())); });
  m.def("available_isas", [] {
    std::vector<std::string> out;
    for (ember::Isa i : ember::supported_isas()) out.emplace_back(ember::isa_name(i));
    return out;
  });
  m.def("cpu_features", [] {
    const ember::CpuFeatures& f = ember::cpu_features();
    py::dict d;
    d["avx2_fma"] = f.avx2_fma;
    d["avx512"] = f.avx512;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx512_bf16"] = f.avx512_bf16;
    return d;
  });
  m.def("registered_kernels", &ember::registered_kernels);
  m.def("gemm_ukernel_name", [] { return std::string(ember::lookup<ember::gemm::Ukernel>("gemm", ember::active_isa()).name); },
        "The GEMM micro-kernel the active ISA uses.");
  m.def("measure_read_bandwidth", &py_measure_read_bandwidth,
        "Measure how fast `threads` threads (0: all) read a float32 array, in GB/s.", py::arg("buffer"),
        py::arg("repeats") = 1, py::arg("threads") = 0);
  m.def("measure_fma_peak", &py_measure_fma_peak,
        "Measure the fp32 FMA rate (GFLOP/s) of the active ISA on `threads` threads (0: all).",
        py::arg("seconds") = 0.2, py::arg("threads") = 0);
}
