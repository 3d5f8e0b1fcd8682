// Convolution and pooling geometry (see geometry.h).
#include "bindings/geometry.h"

#include "core/check.h"
#include "core/window.h"

namespace ember::bindings {
using window::check_axis;

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
  const pool2d::Geometry g = pool_geometry(plane, pooled, 1, 1, 1, 1, 0, 0, 1, 1);
  pool2d::check_adaptive(g);
  return g;
}

}  // namespace ember::bindings
