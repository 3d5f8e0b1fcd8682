// conv2d on the GPU: plain C++ launchers (no CUDA headers) over conv2d.h's
// contract and Geometry (NCHW input, OIHW weight, float32, any stride,
// padding, dilation and groups the CPU reference accepts).
//
// All three are implicit GEMMs on the fp32 CUDA-core GEMM machinery
// (gemm_simt.cuh): the GEMM's tiles are gathered straight from the input,
// the gradient or the weight, so no im2col matrix exists in global memory.
//   forward:         per group, Y[o, (n,i,j)] = W[o, (c,p,q)] @ X[(c,p,q), (n,i,j)],
//                    bias and ReLU in the epilogue;
//   backward-data:   per group, dX[c, (n,h,w)] = W^T[c, (o,p,q)] @ dY~[(o,p,q), (n,h,w)],
//                    dY~ the gather of dy at (h + pt - p dh) / sh when that divides (the
//                    multiply-by-zero of strided positions is not skipped yet);
//   backward-weight: per group, dW[o, (c,p,q)] = dY[o, (n,i,j)] @ X^T[(n,i,j), (c,p,q)],
//                    K = N*OH*OW split into S slices when the output is small, each slice
//                    written to `scratch` and summed in a fixed order by a second kernel:
//                    deterministic, no atomics. db sums dy per channel in a fixed order.
#pragma once

#include <cstdint>

#include "core/cuda_device.h"
#include "ops/conv2d/conv2d.h"

namespace ember::cuda {

void conv2d_fwd(const conv2d::Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                stream_t stream);
void conv2d_bwd_data(const conv2d::Geometry& g, const float* dy, const float* w, float* dx, stream_t stream);

// How many floats of scratch conv2d_bwd_weight needs for g on the current device (0: none).
int64_t conv2d_bwd_weight_scratch(const conv2d::Geometry& g);
// scratch: at least conv2d_bwd_weight_scratch(g) floats of device memory, or null to let the
// call take (and give back) that much with cudaMallocAsync on `stream`. db may be null.
void conv2d_bwd_weight(const conv2d::Geometry& g, const float* x, const float* dy, float* dw, float* db,
                       float* scratch, stream_t stream);

}  // namespace ember::cuda
