// The depthwise kernels as plain loops written for the auto-vectoriser.
//
// Included only by the per-ISA files (conv2d_depthwise*.cpp), each compiling
// them with its own ISA's flags. Everything is in an anonymous namespace on
// purpose: each translation unit gets its own copy, so none can be merged
// into another's.
//
// Output rows are walked in chunks of kV pixels whose count is a compile-time
// constant, so each chunk is whole vector registers: the forward keeps its
// accumulators in registers while every tap adds its shifted input in; the
// backward passes load their chunk of dy once for all taps. A unit column
// stride gets its own instantiation so its loads are contiguous vectors.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/conv2d/conv2d_depthwise.h"

namespace ember::conv2d {
namespace {

constexpr int64_t kV = kDepthwiseLanes;  // pixels per chunk: one zmm, two ymm or four xmm

// The chunk of m (= kV when Full, a compile-time count the compiler unrolls
// into whole vectors) output pixels starting at column j0 of output row i.
template <bool Full, bool UnitStride>
inline void fwd_chunk(const DepthwisePlane& g, const float* __restrict xp, const float* __restrict k, float bias,
                      bool relu, int64_t i, int64_t j0, int64_t n, float* __restrict y) {
  const int64_t m = Full ? kV : n, sw = UnitStride ? 1 : g.sw;
  float acc[kV];
  for (int64_t j = 0; j < m; ++j) acc[j] = bias;
  for (int64_t p = 0; p < g.kh; ++p) {
    const float* row = xp + (i * g.sh + p * g.dh) * g.wp + j0 * sw;
    for (int64_t q = 0; q < g.kw; ++q) {
      const float wv = k[p * g.kw + q];
      const float* __restrict src = row + q * g.dw;
      for (int64_t j = 0; j < m; ++j) acc[j] += wv * src[j * sw];
    }
  }
  if (relu)
    for (int64_t j = 0; j < m; ++j) acc[j] = acc[j] < 0.0f ? 0.0f : acc[j];  // NaN stays NaN
  for (int64_t j = 0; j < m; ++j) y[j] = acc[j];
}

template <bool UnitStride>
void dw_fwd_impl(const DepthwisePlane& g, const float* xp, const float* k, float bias, bool relu, float* y) {
  for (int64_t i = 0; i < g.oh; ++i) {
    float* yr = y + i * g.ow;
    int64_t j0 = 0;
    for (; j0 + kV <= g.ow; j0 += kV) fwd_chunk<true, UnitStride>(g, xp, k, bias, relu, i, j0, kV, yr + j0);
    if (j0 < g.ow) fwd_chunk<false, UnitStride>(g, xp, k, bias, relu, i, j0, g.ow - j0, yr + j0);
  }
}

void dw_fwd(const DepthwisePlane& g, const float* xp, const float* k, float bias, bool relu, float* y) {
  if (g.sw == 1)
    dw_fwd_impl<true>(g, xp, k, bias, relu, y);
  else
    dw_fwd_impl<false>(g, xp, k, bias, relu, y);
}

// Scatters the chunk dy[i, j0 : j0 + m] through every tap into dxp.
template <bool Full, bool UnitStride>
inline void bwd_data_chunk(const DepthwisePlane& g, const float* __restrict dyc, const float* __restrict k, int64_t i,
                           int64_t j0, int64_t n, float* __restrict dxp) {
  const int64_t m = Full ? kV : n, sw = UnitStride ? 1 : g.sw;
  float d[kV];
  for (int64_t j = 0; j < m; ++j) d[j] = dyc[j];
  for (int64_t p = 0; p < g.kh; ++p) {
    float* row = dxp + (i * g.sh + p * g.dh) * g.wp + j0 * sw;
    for (int64_t q = 0; q < g.kw; ++q) {
      const float wv = k[p * g.kw + q];
      float* __restrict dst = row + q * g.dw;
      for (int64_t j = 0; j < m; ++j) dst[j * sw] += wv * d[j];
    }
  }
}

template <bool UnitStride>
void dw_bwd_data_impl(const DepthwisePlane& g, const float* dy, const float* k, float* dxp) {
  for (int64_t i = 0; i < g.oh; ++i) {
    const float* dyr = dy + i * g.ow;
    int64_t j0 = 0;
    for (; j0 + kV <= g.ow; j0 += kV) bwd_data_chunk<true, UnitStride>(g, dyr + j0, k, i, j0, kV, dxp);
    if (j0 < g.ow) bwd_data_chunk<false, UnitStride>(g, dyr + j0, k, i, j0, g.ow - j0, dxp);
  }
}

void dw_bwd_data(const DepthwisePlane& g, const float* dy, const float* k, float* dxp) {
  if (g.sw == 1)
    dw_bwd_data_impl<true>(g, dy, k, dxp);
  else
    dw_bwd_data_impl<false>(g, dy, k, dxp);
}

// lanes[t * kV + j] += dy[i, j0 + j] * (tap t's input under that pixel), j < m.
template <bool Full, bool UnitStride>
inline void bwd_weight_chunk(const DepthwisePlane& g, const float* __restrict xp, const float* __restrict dyc,
                             int64_t i, int64_t j0, int64_t n, float* __restrict lanes) {
  const int64_t m = Full ? kV : n, sw = UnitStride ? 1 : g.sw;
  float d[kV];
  for (int64_t j = 0; j < m; ++j) d[j] = dyc[j];
  for (int64_t p = 0; p < g.kh; ++p) {
    const float* row = xp + (i * g.sh + p * g.dh) * g.wp + j0 * sw;
    for (int64_t q = 0; q < g.kw; ++q) {
      const float* __restrict src = row + q * g.dw;
      float* __restrict l = lanes + (p * g.kw + q) * kV;
      for (int64_t j = 0; j < m; ++j) l[j] += d[j] * src[j * sw];
    }
  }
}

template <bool UnitStride>
void dw_bwd_weight_impl(const DepthwisePlane& g, const float* xp, const float* dy, double* dk, float* lanes) {
  const int64_t taps = g.kh * g.kw;
  std::fill(lanes, lanes + taps * kV, 0.0f);
  for (int64_t i = 0; i < g.oh; ++i) {
    const float* dyr = dy + i * g.ow;
    int64_t j0 = 0;
    for (; j0 + kV <= g.ow; j0 += kV) bwd_weight_chunk<true, UnitStride>(g, xp, dyr + j0, i, j0, kV, lanes);
    if (j0 < g.ow) bwd_weight_chunk<false, UnitStride>(g, xp, dyr + j0, i, j0, g.ow - j0, lanes);
  }
  for (int64_t t = 0; t < taps; ++t) {
    float total = 0.0f;
    for (int64_t j = 0; j < kV; ++j) total += lanes[t * kV + j];
    dk[t] += total;
  }
}

void dw_bwd_weight(const DepthwisePlane& g, const float* xp, const float* dy, double* dk, float* lanes) {
  if (g.sw == 1)
    dw_bwd_weight_impl<true>(g, xp, dy, dk, lanes);
  else
    dw_bwd_weight_impl<false>(g, xp, dy, dk, lanes);
}

}  // namespace
}  // namespace ember::conv2d
