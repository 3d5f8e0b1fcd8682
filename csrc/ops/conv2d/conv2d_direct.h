// Direct convolution kernels, where a GEMM would spend its time packing:
//
//  - depthwise (one input channel per group, with or without a channel
//    multiplier), where a GEMM's K would be KH*KW;
//  - few input channels per group at unit stride (a network's first layer,
//    3 channels, K = 27), where each output row is a handful of vectors that
//    sum K shifted rows of the input.
//
// Each works on zero-padded input planes, big enough that every window lies
// inside them, so the inner loops never clip. The drivers (conv2d_direct.cpp)
// pad, thread and sum over channels and images. One set per ISA:
// conv2d_direct_<isa>.cpp, from conv2d_direct_impl.h.
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

// A zero-padded image of C/groups planes (row pitch wq) for the few-channel
// kernels: output pixel (i, j) of tap k (an im2col row: channel, ky, kx) reads
// xp[off[k] + i*wq + j]. Reads run up to kSmallCSlack floats past the last
// plane, which the caller allocates and zeroes.
struct SmallCImage {
  int64_t wq;          // row pitch
  int64_t oh, ow;      // output plane
  int64_t k;           // taps: C/groups * KH * KW
  const int64_t* off;  // first element of tap k
};

constexpr int64_t kSmallCSlack = 64;

struct DirectKernels {
  // y[i*ow + j] = act(bias + sum_{p,q} k[p*kw + q] * xp[window tap]).
  void (*fwd)(const DepthwisePlane& g, const float* xp, const float* k, float bias, bool relu, float* y);
  // xp[window tap] += k[p*kw + q] * dy[i*ow + j] for every output pixel and tap.
  void (*bwd_data)(const DepthwisePlane& g, const float* dy, const float* k, float* dxp);
  // dk[p*kw + q] += sum_{i,j} dy[i*ow + j] * xp[window tap]: summed in float
  // lanes within the plane, added to dk in double. `lanes` is scratch for
  // kDepthwiseLanes * kh * kw floats.
  void (*bwd_weight)(const DepthwisePlane& g, const float* xp, const float* dy, double* dk, float* lanes);

  // y[o] (oh x ow planes) = act(bias[o] + sum_k w[o*k + t] * tap t) for o < n_out;
  // w is n_out x k row-major, bias may be null.
  void (*smallc_fwd)(const SmallCImage& g, const float* xp, const float* w, const float* bias, bool relu,
                     int64_t n_out, float* y);
  // dw[o*k + t] += sum_{i,j} dy[o, i, j] * tap t at (i, j), for o < n_out.
  void (*smallc_bwd_weight)(const SmallCImage& g, const float* xp, const float* dy, int64_t n_out, float* dw);
};

extern const DirectKernels direct_generic;
extern const DirectKernels direct_avx2;
extern const DirectKernels direct_avx512;

}  // namespace ember::conv2d
