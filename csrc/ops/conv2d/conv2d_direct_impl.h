// The direct kernels as plain loops and GCC vector types.
//
// Included only by the per-ISA files (conv2d_direct_<isa>.cpp), each compiling
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

#include <cstring>

#include "core/simd.h"
#include "ops/conv2d/conv2d_direct.h"

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

// ------------------------------------------------------------ few input channels
//
// Register blocks of kOB output channels x kR output rows x kCols pixels (whole
// native vectors, core/simd.h's vfn): per tap, kR loads of shifted input rows
// per vector and kOB broadcast weights feed kOB * kR multiply-adds per vector
// (with AVX-512, 4 broadcasts per 16 FMAs: broadcasts share the FMA pipes on
// Zen 4, so fewer of them pays). The block is sized to each ISA's registers:
// 32 zmm, 16 ymm, 16 xmm.

constexpr int64_t kCols = 32;  // output pixels per block
constexpr int kJV = kCols / kLanes;
#if defined(__AVX512F__)
constexpr int kOB = 4, kR = 2;
#elif defined(__AVX2__)
constexpr int kOB = 2, kR = 1;
#else
constexpr int kOB = 1, kR = 1;
#endif

template <int OB, int R>
void smallc_fwd_block(const SmallCImage& g, const float* xp, const float* w, const float* bias, bool relu,
                      int64_t o0, int64_t i, int64_t j0, float* y) {
  const int64_t P = g.oh * g.ow, n = std::min<int64_t>(kCols, g.ow - j0);
  vfn acc[OB][R][kJV];
  for (int ob = 0; ob < OB; ++ob)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kJV; ++v) acc[ob][r][v] = splatn(bias ? bias[o0 + ob] : 0.0f);
  const float* base = xp + i * g.wq + j0;
  for (int64_t t = 0; t < g.k; ++t) {
    vfn xv[R][kJV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kJV; ++v) xv[r][v] = loadn(base + g.off[t] + r * g.wq + kLanes * v);
    for (int ob = 0; ob < OB; ++ob) {
      const vfn wv = splatn(w[(o0 + ob) * g.k + t]);
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < kJV; ++v) acc[ob][r][v] += wv * xv[r][v];
    }
  }
  for (int ob = 0; ob < OB; ++ob)
    for (int r = 0; r < R; ++r) {
      float* yo = y + (o0 + ob) * P + (i + r) * g.ow + j0;
      for (int v = 0; v < kJV; ++v) {
        vfn res = acc[ob][r][v];
        if (relu) res = vrelu(res);
        if (kLanes * (v + 1) <= n) {
          storen(yo + kLanes * v, res);
        } else if (kLanes * v < n) {
          float t[kLanes];
          storen(t, res);
          std::memcpy(yo + kLanes * v, t, sizeof(float) * (n - kLanes * v));
        }
      }
    }
}

template <int OB>
void smallc_fwd_rows(const SmallCImage& g, const float* xp, const float* w, const float* bias, bool relu, int64_t o0,
                     float* y) {
  int64_t i = 0;
  for (; i + kR <= g.oh; i += kR)
    for (int64_t j0 = 0; j0 < g.ow; j0 += kCols) smallc_fwd_block<OB, kR>(g, xp, w, bias, relu, o0, i, j0, y);
  for (; i < g.oh; ++i)
    for (int64_t j0 = 0; j0 < g.ow; j0 += kCols) smallc_fwd_block<OB, 1>(g, xp, w, bias, relu, o0, i, j0, y);
}

void smallc_fwd(const SmallCImage& g, const float* xp, const float* w, const float* bias, bool relu, int64_t n_out,
                float* y) {
  int64_t o0 = 0;
  for (; o0 + kOB <= n_out; o0 += kOB) smallc_fwd_rows<kOB>(g, xp, w, bias, relu, o0, y);
  for (; o0 < n_out; ++o0) smallc_fwd_rows<1>(g, xp, w, bias, relu, o0, y);
}

// Dot products along the pixels: blocks of up to kWO output channels x kWT
// taps of accumulators (sized so that they, the dy vectors and the input
// vectors all stay in registers); the pixels past a row's end load as zeros
// on both sides.
#if defined(__AVX512F__)
constexpr int kWO = 4, kWT = 5;
#else
constexpr int kWO = 2, kWT = 4;
#endif

template <int WO, int WT>
void smallc_bwd_weight_block(const SmallCImage& g, const float* xp, const float* dy, int64_t o0, int64_t t0,
                             float* dw) {
  const int64_t P = g.oh * g.ow, full = g.ow / kLanes * kLanes;
  vfn acc[WO][WT] = {};
  // Whole vectors first (a loop with no branches keeps every accumulator in
  // a register), then each row's last partial vector.
  for (int64_t i = 0; i < g.oh; ++i) {
    for (int64_t j0 = 0; j0 < full; j0 += kLanes) {
      vfn d[WO], xv[WT];
      for (int o = 0; o < WO; ++o) d[o] = loadn(dy + (o0 + o) * P + i * g.ow + j0);
      for (int t = 0; t < WT; ++t) xv[t] = loadn(xp + g.off[t0 + t] + i * g.wq + j0);
      for (int o = 0; o < WO; ++o)
        for (int t = 0; t < WT; ++t) acc[o][t] += d[o] * xv[t];
    }
  }
  // The partial vectors: whole loads with the lanes past the row zeroed by a
  // mask of their bits (both sides, so nothing read past the row -- even an
  // infinity -- reaches a sum); xp has slack after its planes, and dy is read
  // whole except where that would pass the end of this call's planes.
  const int64_t tail = g.ow - full;
  vin in_row;
  for (int l = 0; l < kLanes; ++l) in_row[l] = l < tail ? -1 : 0;
  const auto keep = [&](vfn x) { return reinterpret_cast<vfn>(reinterpret_cast<vin>(x) & in_row); };
  const float* dy_end = dy + (o0 + WO) * P;
  for (int64_t i = 0; tail > 0 && i < g.oh; ++i) {
    vfn d[WO], xv[WT];
    for (int o = 0; o < WO; ++o) {
      const float* src = dy + (o0 + o) * P + i * g.ow + full;
      if (src + kLanes <= dy_end) {
        d[o] = keep(loadn(src));
      } else {
        float t[kLanes] = {};
        std::memcpy(t, src, sizeof(float) * tail);
        d[o] = loadn(t);
      }
    }
    for (int t = 0; t < WT; ++t) xv[t] = keep(loadn(xp + g.off[t0 + t] + i * g.wq + full));
    for (int o = 0; o < WO; ++o)
      for (int t = 0; t < WT; ++t) acc[o][t] += d[o] * xv[t];
  }
  for (int o = 0; o < WO; ++o)
    for (int t = 0; t < WT; ++t) {
      float lanes[kLanes];
      storen(lanes, acc[o][t]);
      float s = 0.0f;
      for (float l : lanes) s += l;
      dw[(o0 + o) * g.k + t0 + t] += s;
    }
}

// The block for wo x wt (each at most kWO, kWT): one instantiation per size.
template <int WO, int WT = kWT>
void smallc_bwd_weight_any(int wo, int wt, const SmallCImage& g, const float* xp, const float* dy, int64_t o0,
                           int64_t t0, float* dw) {
  if constexpr (WO > 1) {
    if (wo < WO) return smallc_bwd_weight_any<WO - 1, WT>(wo, wt, g, xp, dy, o0, t0, dw);
  }
  if constexpr (WT > 1) {
    if (wt < WT) return smallc_bwd_weight_any<WO, WT - 1>(wo, wt, g, xp, dy, o0, t0, dw);
  }
  smallc_bwd_weight_block<WO, WT>(g, xp, dy, o0, t0, dw);
}

void smallc_bwd_weight(const SmallCImage& g, const float* xp, const float* dy, int64_t n_out, float* dw) {
  for (int64_t o0 = 0; o0 < n_out; o0 += kWO)
    for (int64_t t0 = 0; t0 < g.k; t0 += kWT)
      smallc_bwd_weight_any<kWO>(static_cast<int>(std::min<int64_t>(kWO, n_out - o0)),
                                 static_cast<int>(std::min<int64_t>(kWT, g.k - t0)), g, xp, dy, o0, t0, dw);
}

}  // namespace
}  // namespace ember::conv2d
