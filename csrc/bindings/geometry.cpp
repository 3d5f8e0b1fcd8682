// Convolution and pooling geometry (see geometry.h).
#include "bindings/geometry.h"

#include <stdexcept>

#include "core/check.h"

namespace ember::bindings {
namespace {

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

// PyTorch's pooling output size along one axis, floor or ceil mode.
// (128-bit arithmetic: the extents are below 2^62, their sums are not.)
int64_t pool_out(int64_t size, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  using wide = __int128;
  const wide num = wide(size) + 2 * wide(pad) - wide(dil) * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  wide out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= wide(size) + pad) --out;
  return out > INT64_MAX ? INT64_MAX : static_cast<int64_t>(out);
}

}  // namespace

void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  check_step(s, "stride");
  check_step(p, "padding");
  check_step(d, "dilation");
  const int64_t window = checked_extent(k, d, "the dilated kernel");
  const int64_t outputs = o >= 1 ? checked_extent(o, s, "the output positions (stride)") : 0;
  EMBER_CHECK_VALUE(n + p < kMaxExtent && outputs + window < kMaxExtent, "the padded ", axis,
                    " extent is too large: input ", n, ", padding ", p, ", output ", o, " x stride ", s, ", kernel ",
                    k, " x dilation ", d, " (geometry extents must be below 2**62)");
}

conv2d::Geometry conv_geometry(const ArrayView& x, const ArrayView& w, const ArrayView& y, int64_t sh, int64_t sw,
                               int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups) {
  EMBER_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got (", sh, ", ", sw, ")");
  EMBER_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got (", dh, ", ", dw, ")");
  EMBER_CHECK_VALUE(pt >= 0 && pl >= 0, "padding must be >= 0, got (", pt, ", ", pl, ")");
  EMBER_CHECK_VALUE(groups >= 1, "groups must be >= 1, got ", groups);
  check_axis(x.shape[2], y.shape[2], w.shape[2], sh, pt, dh, "height");
  check_axis(x.shape[3], y.shape[3], w.shape[3], sw, pl, dw, "width");
  conv2d::Geometry g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], y.shape[2], y.shape[3],
                     w.shape[2], w.shape[3], sh, sw, pt, pl, dh, dw, groups};
  EMBER_CHECK_VALUE(g.c % groups == 0 && g.o % groups == 0, "groups=", groups,
                    " must divide the input channels (", g.c, ") and the output channels (", g.o, ")");
  EMBER_CHECK_VALUE(w.shape[1] * groups == g.c, w.name, " has shape ", shape_str(w.shape), ": dimension 1 must be ",
                    g.c / groups, " (input channels ", g.c, " / groups ", groups, ")");
  EMBER_CHECK_VALUE(y.shape[0] == g.n && y.shape[1] == g.o, y.name, " has shape ", shape_str(y.shape),
                    ": expected (", g.n, ", ", g.o, ", OH, OW)");
  return g;
}

pool2d::Geometry pool_geometry(const ArrayView& x, const ArrayView& y, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  EMBER_CHECK_VALUE(kh >= 1 && kw >= 1, "kernel_size must be >= 1, got (", kh, ", ", kw, ")");
  EMBER_CHECK_VALUE(sh >= 1 && sw >= 1, "stride must be >= 1, got (", sh, ", ", sw, ")");
  EMBER_CHECK_VALUE(dh >= 1 && dw >= 1, "dilation must be >= 1, got (", dh, ", ", dw, ")");
  EMBER_CHECK_VALUE(ph >= 0 && pw >= 0, "padding must be >= 0, got (", ph, ", ", pw, ")");
  EMBER_CHECK_VALUE(y.shape[0] == x.shape[0] && y.shape[1] == x.shape[1], "output has shape ", shape_str(y.shape),
                    " but input has shape ", shape_str(x.shape), ": N and C must agree");
  check_axis(x.shape[2], y.shape[2], kh, sh, ph, dh, "height");
  check_axis(x.shape[3], y.shape[3], kw, sw, pw, dw, "width");
  return {x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3], kh, kw, sh, sw, ph, pw, dh, dw};
}

pool2d::Geometry adaptive_pool_geometry(const ArrayView& plane, const ArrayView& pooled) {
  EMBER_CHECK_VALUE(pooled.shape[2] >= 1 && pooled.shape[3] >= 1, pooled.name, " has shape ", shape_str(pooled.shape),
                    ": output_size must be >= 1");
  EMBER_CHECK_VALUE(plane.shape[2] >= 1 && plane.shape[3] >= 1, plane.name, " has shape ", shape_str(plane.shape),
                    ": adaptive pooling needs a non-empty H x W plane (an empty one has no mean)");
  return pool_geometry(plane, pooled, 1, 1, 1, 1, 0, 0, 1, 1);
}

void check_windows_reach_input(const pool2d::Geometry& g) {
  if (g.planes == 0 || g.oh == 0 || g.ow == 0) return;
  auto axis = [](int64_t outputs, int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
    for (int64_t o = 0; o < outputs; ++o) {
      int64_t t0, t1;
      pool2d::valid_taps(o * s - p, d, k, size, &t0, &t1);
      EMBER_CHECK_VALUE(t1 > t0, "the pooling window of output ", axis, " ", o, " covers no input element (input ",
                        axis, " ", size, ", kernel_size ", k, ", stride ", s, ", padding ", p, ", dilation ", d,
                        "): lower the padding or the dilation");
    }
  };
  axis(g.oh, g.h, g.kh, g.sh, g.ph, g.dh, "row");
  axis(g.ow, g.w, g.kw, g.sw, g.pw, g.dw, "column");
}

void check_pool_output(const pool2d::Geometry& g) {
  for (bool ceil_mode : {false, true})
    if (g.oh == pool_out(g.h, g.kh, g.ph, g.sh, g.dh, ceil_mode) &&
        g.ow == pool_out(g.w, g.kw, g.pw, g.sw, g.dw, ceil_mode))
      return;
  throw std::invalid_argument(detail::concat("output plane ", g.oh, "x", g.ow, " does not match input plane ", g.h,
                                             "x", g.w, " pooled by ", g.kh, "x", g.kw, " windows (stride ", g.sh, "x",
                                             g.sw, ", padding ", g.ph, "x", g.pw, ", dilation ", g.dh, "x", g.dw, ")"));
}

}  // namespace ember::bindings
