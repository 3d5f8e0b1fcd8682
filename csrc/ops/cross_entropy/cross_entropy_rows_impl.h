// The softmax cross-entropy row kernels, written once over 16-float vectors
// (core/simd.h) and compiled per ISA by cross_entropy_rows_<isa>.cpp.
//
// Forward: each of the 16 lanes keeps an online max m, the sum s of
// exp(z - m), and (when weighted) the sum A of b (m - z) and the sum of b,
// the sums in double.
// A block of kU vectors raises m once, rescales s by exp(m_old - m_new) and
// adds Bsum (m_new - m_old) to A -- all terms non-negative, so no
// cancellation even for logits near 1e4. The lanes are combined in double at
// the row's end. One read of the row; nothing written but four doubles.
// Backward: one read of z, one write of dz, exp recomputed from lse.
//
// exp is a Cephes-style range reduction (x = k ln2 + r, |r| <= ln2/2) with a
// degree-6 polynomial: within 2 ulp of expf; exact 0 below the float range
// (so -inf logits give 0), NaN in gives NaN out.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/simd.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace ember::cross_entropy {
namespace {

constexpr int kU = 4;  // vectors per block

inline vf16 vexp(vf16 x) {
  const vf16 xc = x < splat(-87.3365f) ? splat(-87.3365f) : (x > splat(88.3762f) ? splat(88.3762f) : x);
  const vf16 kf = __builtin_convertvector(__builtin_convertvector(xc * splat(1.44269504088896341f) +
                                                                      (xc < splat(0.0f) ? splat(-0.5f) : splat(0.5f)),
                                                                  vi16),
                                          vf16);
  // r = x - k ln2 in two steps (Cody-Waite) for accuracy.
  vf16 r = xc - kf * splat(0.693359375f);
  r = r - kf * splat(-2.12194440e-4f);
  vf16 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  // 2^k from the exponent bits (k in [-126, 127] after the clamp).
  const vi16 bits = (__builtin_convertvector(kf, vi16) + 127) << 23;
  vf16 two_k;
  std::memcpy(&two_k, &bits, sizeof(two_k));
  vf16 y = p * two_k;
  y = x < splat(-87.3365f) ? splat(0.0f) : y;        // underflow (and -inf) -> 0
  y = x > splat(88.3762f) ? splat(INFINITY) : y;     // overflow -> inf
  return x != x ? x : y;                              // NaN stays NaN
}

inline vf16 vmax(vf16 a, vf16 b) { return a > b ? a : b; }

typedef double vd16 __attribute__((vector_size(128)));
inline vd16 widen(vf16 x) { return __builtin_convertvector(x, vd16); }

// b_j for a vector of classes: w_j * ((1 - eps) soft_j + eps / v), or w_j, or 1.
inline vf16 target_weights(const float* w, const float* soft, int64_t j, int64_t n, vf16 ct, vf16 cc) {
  const bool full = n == 16;
  vf16 b = w ? (full ? load16(w + j) : load16_part(w + j, n)) : splat(1.0f);
  if (soft) b = b * ((full ? load16(soft + j) : load16_part(soft + j, n)) * ct + cc);
  return b;
}

void row_fwd(const float* z, int64_t v, const float* w, const float* soft, float eps, bool weighted, double* lse,
             double* dist, double* bsum) {
  const float lowest = -std::numeric_limits<float>::max();
  const vf16 ct = splat(1.0f - eps), cc = splat(eps / static_cast<float>(v));
  // The sums are kept in double lanes: a block adds at most kU terms per lane in float, so
  // the rounding stays at a few ulp however long the row.
  vf16 m = splat(lowest), nan = splat(0.0f);
  vd16 s = {}, a = {}, bs = {};
  // Adds the block z[j0 .. j0 + n) (n <= kU * 16; a partial vector reads as -inf, weight 0).
  auto block = [&](int64_t j0, int64_t n) {
    vf16 x[kU], b[kU];
    vf16 mn = m;
    for (int u = 0; u < kU; ++u) {
      const int64_t left = n - 16 * u;
      if (left >= 16) {
        x[u] = load16(z + j0 + 16 * u);
      } else if (left > 0) {
        x[u] = load16_part(z + j0 + 16 * u, left);
        const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        x[u] = lane < static_cast<int>(left) ? x[u] : splat(-INFINITY);
      } else {
        x[u] = splat(-INFINITY);
      }
      nan = x[u] != x[u] ? splat(1.0f) : nan;
      mn = vmax(mn, x[u]);
    }
    vf16 es = vexp(x[0] - mn);
    for (int u = 1; u < kU; ++u) es += vexp(x[u] - mn);
    s = s * widen(vexp(m - mn)) + widen(es);
    if (weighted) {
      vf16 ab = splat(0.0f), bb = splat(0.0f);
      for (int u = 0; u < kU; ++u) {
        const int64_t left = n - 16 * u;
        b[u] = left > 0 ? target_weights(w, soft, j0 + 16 * u, left < 16 ? left : 16, ct, cc) : splat(0.0f);
        if (left > 0 && left < 16) {
          const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
          b[u] = lane < static_cast<int>(left) ? b[u] : splat(0.0f);
        }
        // A zero weight never multiplies an infinite distance (a masked class).
        ab += b[u] == splat(0.0f) ? splat(0.0f) : b[u] * (mn - x[u]);
        bb += b[u];
      }
      a += bs * widen(mn - m) + widen(ab);
      bs += widen(bb);
    }
    m = mn;
  };
  int64_t j = 0;
  for (; j + 16 * kU <= v; j += 16 * kU) block(j, 16 * kU);
  if (j < v) block(j, v - j);

  float ml[16], nl[16];
  double sl[16], al[16], bl[16];
  store16(ml, m), store16(nl, nan);
  std::memcpy(sl, &s, sizeof(sl)), std::memcpy(al, &a, sizeof(al)), std::memcpy(bl, &bs, sizeof(bl));
  double mx = lowest;
  bool any_nan = false;
  for (int l = 0; l < 16; ++l) mx = std::max(mx, static_cast<double>(ml[l])), any_nan |= nl[l] != 0.0f;
  double S = 0.0, A = 0.0, B = 0.0;
  for (int l = 0; l < 16; ++l) {
    S += sl[l] * std::exp(ml[l] - mx);
    A += al[l] + (bl[l] == 0.0 ? 0.0 : bl[l] * (mx - ml[l]));
    B += bl[l];
  }
  const double nanv = std::numeric_limits<double>::quiet_NaN();
  const double l = any_nan ? nanv : mx + std::log(S);  // S == 0: every class masked, lse = -inf
  *lse = l;
  if (weighted) {
    // sum_j b_j (lse - z_j) = B (lse - mx) + sum_j b_j (mx - z_j)
    *dist = any_nan ? nanv : (B == 0.0 ? 0.0 : B * (l - mx)) + A;
    *bsum = B;
  }
}

void row_bwd(const float* z, int64_t v, float lse, float c, float a, const float* w, const float* soft, float ct,
             float cc, float* dz) {
  const vf16 vl = splat(lse), vc = splat(c), va = splat(a), vct = splat(ct), vcc = splat(cc);
  for (int64_t j = 0; j < v; j += 16) {
    const int64_t n = v - j < 16 ? v - j : 16;
    const vf16 x = n == 16 ? load16(z + j) : load16_part(z + j, n);
    vf16 b = w ? (n == 16 ? load16(w + j) : load16_part(w + j, n)) : splat(1.0f);
    b = b * ((soft ? (n == 16 ? load16(soft + j) : load16_part(soft + j, n)) : splat(0.0f)) * vct + vcc);
    store16_part(dz + j, vc * (va * vexp(x - vl) - b), n);
  }
}

}  // namespace
}  // namespace ember::cross_entropy
