// The softmax cross-entropy row kernels, written once over 16-float vectors
// (core/simd.h) and compiled per ISA by cross_entropy_rows_<isa>.cpp.
//
// Forward, chunk by chunk (16K logits, which stay in L2): the chunk's max, then
// in a second pass the sum of exp(z - max) -- in float over a block of kU
// vectors, in double across blocks -- and (when weighted) the sums A of
// b (max - z) and of b; chunks combine relative to the larger max, all terms
// non-negative, so no cancellation even for logits near 1e4. (A single pass
// with an online max measured ~1.5x slower here: each block's rescaling sat on
// the critical path.) Nothing written but four doubles per row.
// Backward: one read of z, one write of dz, exp recomputed from lse.
// Hot loops see only whole 16-float vectors, the row's tail is handled apart:
// without AVX-512 a 16-float value that may come from either a full or a
// partial load lives in memory, and reading it back as two halves stalled on
// store forwarding (forward and backward took 2.6x as long on Zen 3).
//
// exp only ever sees x <= 0 here (logits minus their running max, or minus the
// row's lse): core/simd.h's vexp_nonpositive.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/simd.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace ember::cross_entropy {
namespace {

constexpr int kU = 4;  // vectors per block
// Logits per chunk: a chunk (64 KB) is read twice -- its max, then its sum of exponentials -- and
// stays in L2 between the two passes.
constexpr int64_t kChunk = 16384;

typedef double vd16 __attribute__((vector_size(128)));
inline vd16 widen(vf16 x) { return __builtin_convertvector(x, vd16); }

// b_j for a vector of classes: w_j * ((1 - eps) soft_j + eps / v), or w_j, or 1.
inline vf16 target_weights(const float* w, const float* soft, int64_t j, int64_t n, vf16 ct, vf16 cc) {
  const bool full = n == 16;
  vf16 b = w ? (full ? load16(w + j) : load16_part(w + j, n)) : splat(1.0f);
  if (soft) b = b * ((full ? load16(soft + j) : load16_part(soft + j, n)) * ct + cc);
  return b;
}

// The row's first n (<= 16) logits from j as a vector, the lanes past the end -inf.
inline vf16 logits16(const float* z, int64_t j, int64_t n) {
  if (n >= 16) return load16(z + j);
  const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return lanewise([n](auto l, auto x) { return l < static_cast<int>(n) ? x : decltype(x){} - INFINITY; }, lane,
                  load16_part(z + j, n));
}

void row_fwd(const float* z, int64_t v, const float* w, const float* soft, float eps, bool weighted, double* lse,
             double* dist, double* bsum) {
  const float lowest = -std::numeric_limits<float>::max();
  const vf16 ct = splat(1.0f - eps), cc = splat(eps / static_cast<float>(v));
  const vi16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  // The row's totals, relative to its max so far M: S = sum exp(z - M), A = sum b (M - z), B = sum b.
  double M = lowest, S = 0.0, A = 0.0, B = 0.0;
  bool any_nan = false;
  for (int64_t c0 = 0; c0 < v; c0 += kChunk) {
    const int64_t cn = std::min<int64_t>(kChunk, v - c0);
    const float* zc = z + c0;
    // Pass 1: the chunk's max (and whether it holds a NaN), over native vectors.
    vfn mx = splatn(lowest), nan = splatn(0.0f);
    const vfn one = splatn(1.0f);
    int64_t j = 0;
    for (; j + kLanes <= cn; j += kLanes) {
      const vfn x = loadn(zc + j);
      nan = x != x ? one : nan;
      mx = mx > x ? mx : x;
    }
    float ml[kLanes], nl[kLanes];
    storen(ml, mx), storen(nl, nan);
    float cm = lowest;
    for (int l = 0; l < kLanes; ++l) cm = std::max(cm, ml[l]), any_nan |= nl[l] != 0.0f;
    for (; j < cn; ++j) {
      if (zc[j] != zc[j])
        any_nan = true;
      else
        cm = std::max(cm, zc[j]);
    }
    // Pass 2, over the chunk again (now in L2): exp(z - cm) summed in float over a block of kU
    // vectors, the blocks' sums in double, so the rounding stays at a few ulp however long the row.
    const vf16 vm = splat(cm);
    vd16 s = {}, a = {}, bs = {};
    for (int64_t j0 = 0; j0 < cn; j0 += 16 * kU) {
      vf16 es = splat(0.0f), ab = splat(0.0f), bb = splat(0.0f);
      if (!weighted && j0 + 16 * kU <= cn) {  // the common block: the same sums, no tail to mask
        for (int u = 0; u < kU; ++u) es += vexp_nonpositive(load16(zc + j0 + 16 * u) - vm);
        s += widen(es);
        continue;
      }
      for (int u = 0; u < kU; ++u) {
        const int64_t j = j0 + 16 * u, left = cn - j;
        if (left <= 0) break;
        const vf16 x = logits16(zc, j, left);
        es += vexp_nonpositive(x - vm);
        if (weighted) {
          vf16 b = target_weights(w, soft, c0 + j, left < 16 ? left : 16, ct, cc);
          b = lanewise([left](auto l, auto b) { return l < static_cast<int>(left) ? b : decltype(b){}; }, lanes, b);
          // A zero weight never multiplies an infinite distance (a masked class).
          ab += lanewise([](auto b, auto d) { return b == 0.0f ? decltype(b){} : b * d; }, b, vm - x);
          bb += b;
        }
      }
      s += widen(es);
      if (weighted) a += widen(ab), bs += widen(bb);
    }
    double sl[16], al[16], bl[16];
    std::memcpy(sl, &s, sizeof(sl)), std::memcpy(al, &a, sizeof(al)), std::memcpy(bl, &bs, sizeof(bl));
    double Sc = 0.0, Ac = 0.0, Bc = 0.0;
    for (int l = 0; l < 16; ++l) Sc += sl[l], Ac += al[l], Bc += bl[l];
    // Combine with the chunks before, relative to the larger max.
    const double Mn = std::max(M, static_cast<double>(cm));
    S = S * std::exp(M - Mn) + Sc * std::exp(cm - Mn);
    A = A + (B == 0.0 ? 0.0 : B * (Mn - M)) + Ac + (Bc == 0.0 ? 0.0 : Bc * (Mn - cm));
    B += Bc;
    M = Mn;
  }
  const double nanv = std::numeric_limits<double>::quiet_NaN();
  const double l = any_nan ? nanv : M + std::log(S);  // S == 0: every class masked, lse = -inf
  *lse = l;
  if (weighted) {
    // sum_j b_j (lse - z_j) = B (lse - M) + sum_j b_j (M - z_j)
    *dist = any_nan ? nanv : (B == 0.0 ? 0.0 : B * (l - M)) + A;
    *bsum = B;
  }
}

void row_bwd(const float* z, int64_t v, float lse, float c, float a, const float* w, const float* soft, float ct,
             float cc, float* dz) {
  const vf16 vl = splat(lse), vc = splat(c), va = splat(a), vct = splat(ct), vcc = splat(cc);
  int64_t j = 0;
  if (!w && !soft)  // b = cc for every class: full vectors without the general path's masking
    for (; j + 16 <= v; j += 16) store16(dz + j, vc * (va * vexp_nonpositive(load16(z + j) - vl) - vcc));
  for (; j < v; j += 16) {
    const int64_t n = v - j < 16 ? v - j : 16;
    const vf16 x = n == 16 ? load16(z + j) : load16_part(z + j, n);
    vf16 b = w ? (n == 16 ? load16(w + j) : load16_part(w + j, n)) : splat(1.0f);
    b = b * ((soft ? (n == 16 ? load16(soft + j) : load16_part(soft + j, n)) : splat(0.0f)) * vct + vcc);
    store16_part(dz + j, vc * (va * vexp_nonpositive(x - vl) - b), n);
  }
}

}  // namespace
}  // namespace ember::cross_entropy
