// The geometry of convolution and pooling calls, read from the arrays and the
// parameters and checked the same way by ember._C and ember._cuda.
//
// Every step (stride, padding, dilation) and every extent (a dilated window,
// the span of the output positions, the padded input) is below 2^62, so the
// kernels' unchecked index arithmetic cannot overflow: a tap's position
// i * stride - pad + p * dilation and any sum of two extents fit in an int64.
// Larger values are refused, naming the argument.
#pragma once

#include <cstdint>

#include "bindings/array_view.h"
#include "ops/conv2d/conv2d.h"
#include "ops/pool2d/pool2d.h"

namespace ember::bindings {

// One axis: kernel k with dilation d, stride s, leading padding p, input size n
// and output size o; checks every extent the kernels compute.
void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis);

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

// Every pooling window must cover at least one input element (else a maximum or an average
// over the input alone has nothing to take): checked where the output has elements.
void check_windows_reach_input(const pool2d::Geometry& g);

// The output plane must be what the window geometry gives (floor or ceil mode).
void check_pool_output(const pool2d::Geometry& g);

}  // namespace ember::bindings
