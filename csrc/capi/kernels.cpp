// The C API's kernels: GEMM, convolution and pooling, every argument checked before any memory
// is touched.
#include <tuple>
#include <utility>

#include "capi/geometry.h"
#include "core/window.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_bf16.h"

using namespace ember::capi;
namespace conv2d = ember::conv2d;
namespace pool2d = ember::pool2d;

namespace ember::capi {

void check_floats(const char* name, const float* p, int64_t n) { check_pointer(name, p, n, sizeof(float)); }

conv2d::Geometry conv_geometry(const ember_conv2d_shape* s) {
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
  conv2d::Geometry g{};
  g.n = s->n, g.c = s->c, g.h = s->h, g.w = s->w, g.o = s->o, g.kh = s->kh, g.kw = s->kw;
  g.sh = s->stride_h, g.sw = s->stride_w, g.pt = s->pad_top, g.pl = s->pad_left;
  g.dh = s->dilation_h, g.dw = s->dilation_w, g.groups = s->groups;
  g.oh = ember::window::conv_output_size(s->h, s->kh, s->pad_top, s->pad_bottom, s->stride_h, s->dilation_h, "height");
  g.ow = ember::window::conv_output_size(s->w, s->kw, s->pad_left, s->pad_right, s->stride_w, s->dilation_w, "width");
  product("the output", {g.n, g.o, g.oh, g.ow});
  return g;
}

ConvSizes conv_sizes(const conv2d::Geometry& g) {
  return {g.n * g.c * g.h * g.w, g.o * (g.c / g.groups) * g.kh * g.kw, g.n * g.o * g.oh * g.ow};
}

pool2d::Geometry pool_geometry(const ember_pool2d_shape* s, bool max) {
  if (s == nullptr) invalid("shape is NULL");
  for (auto [name, v] : {std::pair{"n", s->n}, {"c", s->c}, {"h", s->h}, {"w", s->w}}) check_count(name, v);
  for (auto [name, v] : {std::pair{"kh", s->kh}, {"kw", s->kw}, {"stride_h", s->stride_h}, {"stride_w", s->stride_w},
                         {"dilation_h", s->dilation_h}, {"dilation_w", s->dilation_w}})
    if (v < 1) invalid(name, " must be >= 1, got ", v);
  check_count("pad_h", s->pad_h), check_count("pad_w", s->pad_w);
  if (!max && (s->dilation_h != 1 || s->dilation_w != 1))
    invalid("average pooling takes no dilation: dilation_h and dilation_w must be 1, got ", s->dilation_h, " and ",
            s->dilation_w);
  for (auto [name, v] : {std::pair{"h", s->h}, {"w", s->w}, {"kh", s->kh}, {"kw", s->kw}, {"stride_h", s->stride_h},
                         {"stride_w", s->stride_w}, {"pad_h", s->pad_h}, {"pad_w", s->pad_w},
                         {"dilation_h", s->dilation_h}, {"dilation_w", s->dilation_w}})
    if (v >= ember::window::kMaxExtent) invalid(name, " is ", v, ", too large: it must be below 2**62");
  product("the input", {s->n, s->c, s->h, s->w});
  const int64_t planes = product("the input's planes", {s->n, s->c});
  pool2d::Geometry g{planes, s->h, s->w, 0, 0, s->kh, s->kw, s->stride_h, s->stride_w, s->pad_h, s->pad_w,
                     s->dilation_h, s->dilation_w};
  g.oh = pool2d::output_size(s->h, s->kh, s->pad_h, s->stride_h, s->dilation_h, s->ceil_mode != 0);
  g.ow = pool2d::output_size(s->w, s->kw, s->pad_w, s->stride_w, s->dilation_w, s->ceil_mode != 0);
  if (g.oh < 1 || g.ow < 1)
    invalid("the pooling window (", s->kh, " x ", s->kw, ", dilation ", s->dilation_h, " x ", s->dilation_w,
            ") is larger than the padded input (", s->h, " x ", s->w, ", padding ", s->pad_h, " x ", s->pad_w, ")");
  ember::window::check_axis(g.h, g.oh, g.kh, g.sh, g.ph, g.dh, "height");
  ember::window::check_axis(g.w, g.ow, g.kw, g.sw, g.pw, g.dw, "width");
  product("the output", {s->n, s->c, g.oh, g.ow});
  return g;
}

pool2d::Geometry adaptive_geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  check_count("n", n), check_count("c", c);
  for (auto [name, v] : {std::pair{"h", h}, {"w", w}, {"out_h", oh}, {"out_w", ow}})
    if (v < 1) invalid(name, " must be >= 1, got ", v);
  product("the input", {n, c, h, w});
  product("the output", {n, c, oh, ow});
  const pool2d::Geometry g{n * c, h, w, oh, ow, 1, 1, 1, 1, 0, 0, 1, 1};
  pool2d::check_adaptive(g);
  return g;
}

}  // namespace ember::capi

namespace {

constexpr int64_t F = sizeof(float);

// The checks both GEMMs share; `elem` is the size of A's and B's elements.
template <class T>
void gemm_args(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
               int64_t ldb, float* c, int64_t ldc, const float* bias) {
  check_count("m", m), check_count("n", n), check_count("k", k);
  const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  const int64_t na = span("a", a_rows, a_cols, lda), nb = span("b", b_rows, b_cols, ldb);
  const int64_t nc = span("c", m, n, ldc), E = sizeof(T);
  check_pointer("a", a, na, E), check_pointer("b", b, nb, E), check_floats("c", c, nc), check_floats("bias", bias, 0);
  check_apart("c", c, nc * F, "a", a, na * E);
  check_apart("c", c, nc * F, "b", b, nb * E);
  check_apart("c", c, nc * F, "bias", bias, bias ? n * F : 0);
}

void check_convert(const void* x, int64_t n, int64_t x_size, const void* out, int64_t out_size) {
  check_count("n", n);
  check_pointer("x", x, n, x_size), check_pointer("out", out, n, out_size);
  check_apart("out", out, n * out_size, "x", x, n * x_size);
}

}  // namespace

extern "C" {

ember_status ember_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                            const float* bias, int relu) {
  return guarded("ember_gemm_f32", [&] {
    gemm_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, bias);
    ember::gemm::GemmArgs g;
    g.a = trans_a ? ember::MatrixF32{a, m, k, 1, lda} : ember::MatrixF32{a, m, k, lda, 1};
    g.b = trans_b ? ember::MatrixF32{b, k, n, 1, ldb} : ember::MatrixF32{b, k, n, ldb, 1};
    g.c = {c, m, n, ldc};
    g.alpha = alpha, g.beta = beta, g.bias = bias, g.relu = relu != 0;
    ember::gemm::gemm_cpu(g, active_isa(), threads());
  });
}

ember_status ember_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                             const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c,
                             int64_t ldc, const float* bias, int relu) {
  return guarded("ember_gemm_bf16", [&] {
    gemm_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, bias);
    ember::gemm::GemmBf16Args g;
    g.a = trans_a ? ember::gemm::MatrixBF16{a, m, k, 1, lda} : ember::gemm::MatrixBF16{a, m, k, lda, 1};
    g.b = trans_b ? ember::gemm::MatrixBF16{b, k, n, 1, ldb} : ember::gemm::MatrixBF16{b, k, n, ldb, 1};
    g.c = {c, m, n, ldc};
    g.alpha = alpha, g.beta = beta, g.bias = bias, g.relu = relu != 0;
    ember::gemm::gemm_bf16_cpu(g, active_isa(), threads());
  });
}

ember_status ember_bf16_from_f32(const float* x, int64_t n, uint16_t* out) {
  return guarded("ember_bf16_from_f32", [&] {
    check_convert(x, n, F, out, 2);
    ember::gemm::bf16_from_f32_cpu(x, n, out, active_isa(), threads());
  });
}

ember_status ember_f32_from_bf16(const uint16_t* x, int64_t n, float* out) {
  return guarded("ember_f32_from_bf16", [&] {
    check_convert(x, n, 2, out, F);
    ember::gemm::f32_from_bf16_cpu(x, n, out, active_isa(), threads());
  });
}

ember_status ember_conv2d_output_size(const ember_conv2d_shape* shape, int64_t* out_h, int64_t* out_w) {
  return guarded("ember_conv2d_output_size", [&] {
    if (out_h == nullptr || out_w == nullptr) invalid("out_h and out_w must not be NULL");
    const conv2d::Geometry g = conv_geometry(shape);
    *out_h = g.oh, *out_w = g.ow;
  });
}

ember_status ember_conv2d_forward_f32(const ember_conv2d_shape* shape, const float* x, const float* w,
                                      const float* bias, int relu, float* y) {
  return guarded("ember_conv2d_forward_f32", [&] {
    const conv2d::Geometry g = conv_geometry(shape);
    const ConvSizes n = conv_sizes(g);
    check_floats("x", x, n.x), check_floats("w", w, n.w), check_floats("y", y, n.y), check_floats("bias", bias, 0);
    check_apart("y", y, n.y * F, "x", x, n.x * F);
    check_apart("y", y, n.y * F, "w", w, n.w * F);
    check_apart("y", y, n.y * F, "bias", bias, bias ? g.o * F : 0);
    if (n.y == 0) return;
    conv2d::conv2d_fwd(g, x, w, bias, relu != 0, y, active_isa(), threads());
  });
}

ember_status ember_conv2d_backward_data_f32(const ember_conv2d_shape* shape, const float* dy, const float* w,
                                            float* dx) {
  return guarded("ember_conv2d_backward_data_f32", [&] {
    const conv2d::Geometry g = conv_geometry(shape);
    const ConvSizes n = conv_sizes(g);
    check_floats("dy", dy, n.y), check_floats("w", w, n.w), check_floats("dx", dx, n.x);
    check_apart("dx", dx, n.x * F, "dy", dy, n.y * F);
    check_apart("dx", dx, n.x * F, "w", w, n.w * F);
    if (n.x == 0) return;
    conv2d::conv2d_bwd_data(g, dy, w, dx, active_isa(), threads());
  });
}

ember_status ember_conv2d_backward_weight_f32(const ember_conv2d_shape* shape, const float* x, const float* dy,
                                              float* dw, float* db) {
  return guarded("ember_conv2d_backward_weight_f32", [&] {
    const conv2d::Geometry g = conv_geometry(shape);
    const ConvSizes n = conv_sizes(g);
    check_floats("x", x, n.x), check_floats("dy", dy, n.y), check_floats("dw", dw, n.w), check_floats("db", db, 0);
    for (auto [name, p, bytes] : {std::tuple{"dw", static_cast<const void*>(dw), n.w * F},
                                  {"db", static_cast<const void*>(db), db ? g.o * F : 0}}) {
      check_apart(name, p, bytes, "x", x, n.x * F);
      check_apart(name, p, bytes, "dy", dy, n.y * F);
    }
    check_apart("db", db, db ? g.o * F : 0, "dw", dw, n.w * F);
    conv2d::conv2d_bwd_weight(g, x, dy, dw, db, active_isa(), threads());
  });
}

ember_status ember_pool2d_output_size(const ember_pool2d_shape* shape, int64_t* out_h, int64_t* out_w) {
  return guarded("ember_pool2d_output_size", [&] {
    if (out_h == nullptr || out_w == nullptr) invalid("out_h and out_w must not be NULL");
    const pool2d::Geometry g = pool_geometry(shape, true);
    *out_h = g.oh, *out_w = g.ow;
  });
}

ember_status ember_max_pool2d_forward_f32(const ember_pool2d_shape* shape, const float* x, float* y,
                                          int64_t* indices) {
  return guarded("ember_max_pool2d_forward_f32", [&] {
    const pool2d::Geometry g = pool_geometry(shape, true);
    pool2d::check_windows_reach_input(g);
    const int64_t nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    check_floats("x", x, nx), check_floats("y", y, ny), check_pointer("indices", indices, 0, 8);
    check_apart("y", y, ny * F, "x", x, nx * F);
    check_apart("indices", indices, indices ? ny * 8 : 0, "x", x, nx * F);
    check_apart("indices", indices, indices ? ny * 8 : 0, "y", y, ny * F);
    if (ny == 0) return;
    pool2d::max_pool2d_fwd(g, x, y, indices, active_isa(), threads());
  });
}

ember_status ember_max_pool2d_backward_f32(const ember_pool2d_shape* shape, const float* dy, const int64_t* indices,
                                           float* dx) {
  return guarded("ember_max_pool2d_backward_f32", [&] {
    const pool2d::Geometry g = pool_geometry(shape, true);
    const int64_t nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    check_floats("dy", dy, ny), check_pointer("indices", indices, ny, 8), check_floats("dx", dx, nx);
    check_apart("dx", dx, nx * F, "dy", dy, ny * F);
    check_apart("dx", dx, nx * F, "indices", indices, ny * 8);
    pool2d::check_indices(indices, ny, g.h * g.w);
    pool2d::max_pool2d_bwd(g, dy, indices, dx, threads());
  });
}

ember_status ember_avg_pool2d_forward_f32(const ember_pool2d_shape* shape, int count_include_pad, const float* x,
                                          float* y) {
  return guarded("ember_avg_pool2d_forward_f32", [&] {
    const pool2d::Geometry g = pool_geometry(shape, false);
    if (!count_include_pad) pool2d::check_windows_reach_input(g);
    const int64_t nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    check_floats("x", x, nx), check_floats("y", y, ny);
    check_apart("y", y, ny * F, "x", x, nx * F);
    if (ny == 0) return;
    pool2d::avg_pool2d_fwd(g, count_include_pad != 0, x, y, threads());
  });
}

ember_status ember_avg_pool2d_backward_f32(const ember_pool2d_shape* shape, int count_include_pad, const float* dy,
                                           float* dx) {
  return guarded("ember_avg_pool2d_backward_f32", [&] {
    const pool2d::Geometry g = pool_geometry(shape, false);
    if (!count_include_pad) pool2d::check_windows_reach_input(g);
    const int64_t nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    check_floats("dy", dy, ny), check_floats("dx", dx, nx);
    check_apart("dx", dx, nx * F, "dy", dy, ny * F);
    pool2d::avg_pool2d_bwd(g, count_include_pad != 0, dy, dx, threads());
  });
}

ember_status ember_adaptive_avg_pool2d_forward_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t out_h,
                                                   int64_t out_w, const float* x, float* y) {
  return guarded("ember_adaptive_avg_pool2d_forward_f32", [&] {
    const pool2d::Geometry g = adaptive_geometry(n, c, h, w, out_h, out_w);
    const int64_t nx = g.planes * h * w, ny = g.planes * out_h * out_w;
    check_floats("x", x, nx), check_floats("y", y, ny);
    check_apart("y", y, ny * F, "x", x, nx * F);
    if (ny == 0) return;
    pool2d::adaptive_avg_pool2d_fwd(g, x, y, threads());
  });
}

ember_status ember_adaptive_avg_pool2d_backward_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t out_h,
                                                    int64_t out_w, const float* dy, float* dx) {
  return guarded("ember_adaptive_avg_pool2d_backward_f32", [&] {
    const pool2d::Geometry g = adaptive_geometry(n, c, h, w, out_h, out_w);
    const int64_t nx = g.planes * h * w, ny = g.planes * out_h * out_w;
    check_floats("dy", dy, ny), check_floats("dx", dx, nx);
    check_apart("dx", dx, nx * F, "dy", dy, ny * F);
    pool2d::adaptive_avg_pool2d_bwd(g, dy, dx, threads());
  });
}

}  // extern "C"
