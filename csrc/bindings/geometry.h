// The geometry of convolution and pooling calls, read from the arrays and the
// parameters and checked the same way by ember._C and ember._cuda (every extent
// bounded below 2^62: core/window.h; the pooling checks: ops/pool2d/pool2d.h).
#pragma once

#include <cstdint>

#include "bindings/array_view.h"
#include "ops/conv2d/conv2d.h"
#include "ops/pool2d/pool2d.h"

namespace ember::bindings {

// Input x (N C H W), weight w (O C/groups KH KW) and output y (N O OH OW), 4-D
// arrays already read; stride, top/left padding, dilation and groups checked.
conv2d::Geometry conv_geometry(const ArrayView& x, const ArrayView& w, const ArrayView& y, int64_t sh, int64_t sw,
                               int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups);

// Input x (N C H W) and output y (N C OH OW), 4-D arrays already read, pooled
// by kh x kw windows; the parameters checked.
pool2d::Geometry pool_geometry(const ArrayView& x, const ArrayView& y, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int64_t dh, int64_t dw);

// Adaptive pooling between `plane` (N C H W: the input, or its gradient) and
// `pooled` (N C OH OW: the output, or its gradient): both planes non-empty.
pool2d::Geometry adaptive_pool_geometry(const ArrayView& plane, const ArrayView& pooled);

}  // namespace ember::bindings
