// 2-D pooling on the GPU: plain C++ launchers (no CUDA headers) over the
// contract and Geometry of pool2d.h, with the same results as its references.
#pragma once

#include <cstdint>

#include "core/cuda_device.h"
#include "ops/pool2d/pool2d.h"

namespace ember::cuda {

// idx may be null. Windows may overlap.
void max_pool2d_fwd(const pool2d::Geometry& g, const float* x, float* y, int64_t* idx, stream_t stream);
// dx = 0, then dx[plane, idx] += dy for every output. Indices outside the plane (which
// max_pool2d_fwd never writes) are skipped, never written through. Only planes, h, w, oh and
// ow of g are used. When no two outputs name the same input (non-overlapping windows, the
// usual case) every input receives at most one value: exact and deterministic. When several
// do, the sum is formed with atomic adds, so with three or more contributions to one input
// its rounding can differ from run to run by an ulp or so.
void max_pool2d_bwd(const pool2d::Geometry& g, const float* dy, const int64_t* idx, float* dx, stream_t stream);
void avg_pool2d_fwd(const pool2d::Geometry& g, bool count_include_pad, const float* x, float* y, stream_t stream);
// A gather: each input sums the outputs whose windows cover it, in a fixed order (deterministic).
void avg_pool2d_bwd(const pool2d::Geometry& g, bool count_include_pad, const float* dy, float* dx, stream_t stream);
void adaptive_avg_pool2d_fwd(const pool2d::Geometry& g, const float* x, float* y, stream_t stream);
void adaptive_avg_pool2d_bwd(const pool2d::Geometry& g, const float* dy, float* dx, stream_t stream);

}  // namespace ember::cuda
