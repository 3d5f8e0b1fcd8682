// The C API (include/ember/ember.h) over the same kernels ember._C runs: every argument checked
// here, every C++ exception turned into a status and a thread-local message.
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "core/check.h"
#include "core/cpu_features.h"
#include "core/registry.h"
#include "core/threads.h"
#include "ember/ember.h"
#include "ops/conv2d/conv2d.h"
#include "ops/gemm/gemm.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "unknown"
#endif

namespace {

thread_local std::string t_error;

// An invalid argument: the message names it.
struct Invalid : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Something this CPU or build cannot do.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Parts>
[[noreturn]] void invalid(const Parts&... parts) {
  throw Invalid(ember::detail::concat(parts...));
}

// Runs `body`, turning what it throws into a status and this thread's message.
template <class F>
ember_status guarded(const char* fn, F&& body) {
  try {
    body();
    t_error.clear();
    return EMBER_OK;
  } catch (const Unsupported& e) {
    t_error = std::string(fn) + ": " + e.what();
    return EMBER_ERROR_UNSUPPORTED;
  } catch (const std::bad_alloc&) {
    t_error = std::string(fn) + ": out of memory";
    return EMBER_ERROR_OUT_OF_MEMORY;
  } catch (const std::invalid_argument& e) {
    t_error = std::string(fn) + ": " + e.what();
    return EMBER_ERROR_INVALID_ARGUMENT;
  } catch (const std::exception& e) {
    t_error = std::string(fn) + ": " + e.what();
    return EMBER_ERROR_INTERNAL;
  } catch (...) {
    t_error = std::string(fn) + ": an unknown error";
    return EMBER_ERROR_INTERNAL;
  }
}

constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 16;

void check_count(const char* name, int64_t v) {
  if (v < 0) invalid(name, " must be >= 0, got ", v);
}

// rows x cols with leading dimension ld: the number of elements from the first to one past the
// last, checked against overflow.
int64_t span(const char* name, int64_t rows, int64_t cols, int64_t ld) {
  if (ld < cols || ld < 1) invalid("the leading dimension of ", name, " must be >= max(1, ", cols, "), got ", ld);
  if (rows == 0 || cols == 0) return 0;
  if (rows - 1 > (kMaxElements - cols) / ld) invalid(name, " (", rows, " x ", cols, ", ld ", ld, ") is too large");
  return (rows - 1) * ld + cols;
}

int64_t product(const char* name, std::initializer_list<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0) invalid(name, " has a negative size ", d);
    if (d != 0 && p > kMaxElements / d) invalid(name, " is too large");
    p *= d;
  }
  return p;
}

void check_pointer(const char* name, const void* p, int64_t elements) {
  if (elements > 0 && p == nullptr) invalid(name, " is NULL");
  if (p != nullptr && reinterpret_cast<std::uintptr_t>(p) % alignof(float) != 0)
    invalid(name, " is not aligned to ", alignof(float), " bytes");
}

// Whether [a, a + na) and [b, b + nb) (in floats) share memory.
bool overlap(const float* a, int64_t na, const float* b, int64_t nb) {
  if (a == nullptr || b == nullptr || na == 0 || nb == 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + static_cast<std::uintptr_t>(nb) * sizeof(float) &&
         pb < pa + static_cast<std::uintptr_t>(na) * sizeof(float);
}

void check_apart(const char* out, const float* o, int64_t no, const char* in, const float* i, int64_t ni) {
  if (overlap(o, no, i, ni)) invalid(out, " must not share memory with ", in);
}

// The ISA the kernels use and the threads they may take (EMBER_ISA read once, as ember._C does).
ember::Isa active() {
  static const bool ready = [] {
    ember::init_isa_from_env();
    return true;
  }();
  (void)ready;
  return ember::active_isa();
}

int64_t out_extent(const char* what, int64_t in, int64_t pad_a, int64_t pad_b, int64_t dil, int64_t k, int64_t stride) {
  const int64_t span_k = dil * (k - 1) + 1;
  const int64_t padded = in + pad_a + pad_b;
  if (padded < span_k)
    invalid("the padded input ", what, " (", padded, ") is smaller than the dilated kernel (", span_k, ")");
  return (padded - span_k) / stride + 1;
}

ember::conv2d::Geometry geometry(const ember_conv2d_shape* s) {
  if (s == nullptr) invalid("shape is NULL");
  for (auto [name, v] : {std::pair{"n", s->n}, {"c", s->c}, {"h", s->h}, {"w", s->w}, {"o", s->o}})
    check_count(name, v);
  for (auto [name, v] : {std::pair{"kh", s->kh}, {"kw", s->kw}, {"stride_h", s->stride_h}, {"stride_w", s->stride_w},
                         {"dilation_h", s->dilation_h}, {"dilation_w", s->dilation_w}, {"groups", s->groups}})
    if (v < 1) invalid(name, " must be >= 1, got ", v);
  for (auto [name, v] : {std::pair{"pad_top", s->pad_top}, {"pad_left", s->pad_left}, {"pad_bottom", s->pad_bottom},
                         {"pad_right", s->pad_right}})
    check_count(name, v);
  if (s->c % s->groups || s->o % s->groups)
    invalid("groups (", s->groups, ") must divide c (", s->c, ") and o (", s->o, ")");
  product("the input", {s->n, s->c, s->h, s->w});
  product("the weight", {s->o, s->c / s->groups, s->kh, s->kw});
  ember::conv2d::Geometry g{};
  g.n = s->n, g.c = s->c, g.h = s->h, g.w = s->w, g.o = s->o, g.kh = s->kh, g.kw = s->kw;
  g.sh = s->stride_h, g.sw = s->stride_w, g.pt = s->pad_top, g.pl = s->pad_left;
  g.dh = s->dilation_h, g.dw = s->dilation_w, g.groups = s->groups;
  g.oh = out_extent("height", s->h, s->pad_top, s->pad_bottom, s->dilation_h, s->kh, s->stride_h);
  g.ow = out_extent("width", s->w, s->pad_left, s->pad_right, s->dilation_w, s->kw, s->stride_w);
  product("the output", {g.n, g.o, g.oh, g.ow});
  return g;
}

}  // namespace

extern "C" {

int ember_abi_version(void) { return EMBER_ABI_VERSION; }

const char* ember_version(void) { return EMBER_VERSION; }

const char* ember_last_error(void) { return t_error.c_str(); }

const char* ember_status_string(ember_status status) {
  switch (status) {
    case EMBER_OK: return "ok";
    case EMBER_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case EMBER_ERROR_UNSUPPORTED: return "unsupported";
    case EMBER_ERROR_OUT_OF_MEMORY: return "out of memory";
    case EMBER_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

int ember_get_num_threads(void) {
  int n = 1;
  guarded("ember_get_num_threads", [&] { n = ember::get_num_threads(); });
  return n;
}

ember_status ember_set_num_threads(int n) {
  return guarded("ember_set_num_threads", [&] {
    if (n < 1 || n > 1024) invalid("n must be between 1 and 1024, got ", n);
    ember::set_num_threads(n);
  });
}

const char* ember_isa(void) {
  const char* name = "generic";
  guarded("ember_isa", [&] { name = ember::isa_name(active()); });
  return name;
}

ember_status ember_set_isa(const char* name) {
  return guarded("ember_set_isa", [&] {
    if (name == nullptr) invalid("name is NULL");
    active();
    const ember::Isa isa = ember::parse_isa(name);  // an unknown name: std::invalid_argument
    if (!ember::isa_supported(isa))
      throw Unsupported(ember::detail::concat("ISA '", name, "' is not supported by this CPU"));
    ember::set_active_isa(isa);
  });
}

ember_status ember_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                            const float* bias, int relu) {
  return guarded("ember_gemm_f32", [&] {
    check_count("m", m), check_count("n", n), check_count("k", k);
    const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    const int64_t na = span("a", a_rows, a_cols, lda), nb = span("b", b_rows, b_cols, ldb);
    const int64_t nc = span("c", m, n, ldc);
    check_pointer("a", a, na), check_pointer("b", b, nb), check_pointer("c", c, nc);
    check_pointer("bias", bias, 0);
    check_apart("c", c, nc, "a", a, na);
    check_apart("c", c, nc, "b", b, nb);
    check_apart("c", c, nc, "bias", bias, bias ? n : 0);
    ember::gemm::GemmArgs g;
    g.a = trans_a ? ember::MatrixF32{a, m, k, 1, lda} : ember::MatrixF32{a, m, k, lda, 1};
    g.b = trans_b ? ember::MatrixF32{b, k, n, 1, ldb} : ember::MatrixF32{b, k, n, ldb, 1};
    g.c = {c, m, n, ldc};
    g.alpha = alpha, g.beta = beta, g.bias = bias, g.relu = relu != 0;
    ember::gemm::gemm_cpu(g, active(), ember::get_num_threads());
  });
}

ember_status ember_conv2d_output_size(const ember_conv2d_shape* shape, int64_t* out_h, int64_t* out_w) {
  return guarded("ember_conv2d_output_size", [&] {
    if (out_h == nullptr || out_w == nullptr) invalid("out_h and out_w must not be NULL");
    const ember::conv2d::Geometry g = geometry(shape);
    *out_h = g.oh, *out_w = g.ow;
  });
}

ember_status ember_conv2d_forward_f32(const ember_conv2d_shape* shape, const float* x, const float* w,
                                      const float* bias, int relu, float* y) {
  return guarded("ember_conv2d_forward_f32", [&] {
    const ember::conv2d::Geometry g = geometry(shape);
    const int64_t nx = g.n * g.c * g.h * g.w, nw = g.o * (g.c / g.groups) * g.kh * g.kw;
    const int64_t ny = g.n * g.o * g.oh * g.ow;
    check_pointer("x", x, nx), check_pointer("w", w, nw), check_pointer("y", y, ny), check_pointer("bias", bias, 0);
    check_apart("y", y, ny, "x", x, nx);
    check_apart("y", y, ny, "w", w, nw);
    check_apart("y", y, ny, "bias", bias, bias ? g.o : 0);
    if (ny == 0) return;
    ember::conv2d::conv2d_fwd(g, x, w, bias, relu != 0, y, active(), ember::get_num_threads());
  });
}

}  // extern "C"
