// The C API's convolution and pooling shapes, checked and turned into the kernels' geometry
// (shared by the kernel functions and the model's layers).
#pragma once

#include <cstdint>

#include "capi/common.h"
#include "ops/conv2d/conv2d.h"
#include "ops/pool2d/pool2d.h"

namespace ember::capi {

// A float buffer's checks: present when it has elements, aligned.
void check_floats(const char* name, const float* p, int64_t n);

// Every field checked (sizes >= 0, kernel, stride, dilation and groups >= 1, extents below
// 2^62, element counts without overflow); the output's height and width computed.
conv2d::Geometry conv_geometry(const ember_conv2d_shape* s);

struct ConvSizes {
  int64_t x, w, y;  // elements of the input, the weight and the output
};
ConvSizes conv_sizes(const conv2d::Geometry& g);

// Likewise for pooling; `max` allows dilation (average pooling has none).
pool2d::Geometry pool_geometry(const ember_pool2d_shape* s, bool max);

// Adaptive average pooling of n x c x h x w to n x c x oh x ow (all planes non-empty).
pool2d::Geometry adaptive_geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);

}  // namespace ember::capi
