// Direct kernels for convolutions with one input channel per group (depthwise
// convolutions, with or without a channel multiplier): a GEMM with K = KH*KW
// would spend its time packing, so these walk the planes directly.
//
// Each works on one zero-padded input plane xp (row stride wp), big enough
// that every window lies inside it, so the inner loops never clip: output
// pixel (i, j) reads xp[(i*sh + p*dh) * wp + j*sw + q*dw] for tap (p, q).
// The driver (conv2d_cpu.cpp) pads, threads and sums over channels/images.
#pragma once

#include <cstdint>

namespace ember::conv2d {

struct DepthwisePlane {
  int64_t wp;          // row stride of the padded plane
  int64_t oh, ow;      // output plane
  int64_t kh, kw;      // kernel
  int64_t sh, sw;      // stride
  int64_t dh, dw;      // dilation
};

constexpr int64_t kDepthwiseLanes = 16;

struct DepthwiseKernels {
  // y[i*ow + j] = act(bias + sum_{p,q} k[p*kw + q] * xp[window tap]).
  void (*fwd)(const DepthwisePlane& g, const float* xp, const float* k, float bias, bool relu, float* y);
  // xp[window tap] += k[p*kw + q] * dy[i*ow + j] for every output pixel and tap.
  void (*bwd_data)(const DepthwisePlane& g, const float* dy, const float* k, float* dxp);
  // dk[p*kw + q] += sum_{i,j} dy[i*ow + j] * xp[window tap]: summed in float
  // lanes within the plane, added to dk in double. `lanes` is scratch for
  // kDepthwiseLanes * kh * kw floats.
  void (*bwd_weight)(const DepthwisePlane& g, const float* xp, const float* dy, double* dk, float* lanes);
};

extern const DepthwiseKernels depthwise_generic;
extern const DepthwiseKernels depthwise_avx2;
extern const DepthwiseKernels depthwise_avx512;

}  // namespace ember::conv2d
