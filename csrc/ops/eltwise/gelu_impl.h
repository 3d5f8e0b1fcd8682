// GELU forward and backward on float32, written once over 16-float vectors (core/simd.h) and
// compiled per ISA by gelu_<isa>.cpp; float64 keeps eltwise_cpu.cpp's std::erf loops.
//
// The normal CDF from erf(z), z = x / sqrt(2), in three ranges (coefficients fitted here by
// weighted least squares, errors measured against math.erf in double):
//   |z| <= 0.875   erf(z) = z P(z^2), P of degree 6 (relative error 5e-10 before rounding);
//   0.875 < |z| <= 3.92   erfc(|z|) = exp(-z^2) Q(s), s = (|z| - 2.3975) / 1.5225 in [-1, 1], Q of
//                  degree 12 (3e-8), so the CDF's tail 0.5 erfc(|z|) below zero is computed
//                  without the cancellation of 1 + erf(z);
//   |z| > 3.92     erf(z) = +-1 in float32 (erfc < 2^-25); the CDF is 1, or 0 below zero.
// Altogether within a few float32 ulps of x * 0.5 * (1 + erf(x / sqrt 2)) (the tests' bound);
// NaN propagates, +-inf give inf and NaN as the scalar expression does.
#pragma once

#include <cmath>

#include "core/simd.h"

namespace ember::eltwise {
namespace {

template <class V>
inline V poly(V x, const float* c, int n) {
  V acc = V{} + c[0];
  for (int i = 1; i < n; ++i) acc = acc * x + c[i];
  return acc;
}

// The normal CDF at x (NaN in, NaN out); V any float vector (a native part inside lanewise).
template <class V>
inline V normal_cdf_part(V x) {
  static const float kP[7] = {8.668692317e-05f, -8.207446663e-04f, 5.206204019e-03f, -2.686124668e-02f,
                              1.128372326e-01f, -3.761263490e-01f, 1.128379226e+00f};
  static const float kQ[13] = {2.063981628e-05f,  -5.921978664e-05f, 9.121798212e-05f,  -2.145847684e-04f,
                               5.904760328e-04f,  -1.413370133e-03f, 3.218572587e-03f,  -7.173210382e-03f,
                               1.546688564e-02f,  -3.209792823e-02f, 6.388951838e-02f,  -1.213780716e-01f,
                               2.186978757e-01f};
  const V zero{}, one = zero + 1.0f;
  const V z = x * 0.707106781f;
  const V a = z < 0.0f ? -z : z;
  const V z2 = z * z;
  // Near zero: 0.5 + 0.5 erf(z).
  const V inner = 0.5f + 0.5f * (z * poly(z2, kP, 7));
  // The tails: half of erfc(|z|), |z| clamped into the fitted range (the result is replaced past it).
  const V ac = a > 3.92f ? zero + 3.92f : a;
  const V s = (ac - 2.3975f) * 0.65681445f;
  const V half_erfc = 0.5f * exp_nonpositive(-(ac * ac)) * poly(s, kQ, 13);
  const V upper = a > 3.92f ? one : one - half_erfc;
  const V lower = a > 3.92f ? zero : half_erfc;
  const V tail = z < 0.0f ? lower : upper;
  const V cdf = a <= 0.875f ? inner : tail;
  return z != z ? z : cdf;  // NaN
}

// y = x cdf(x) and dx = g (cdf + x pdf), pdf = exp(-x^2 / 2) / sqrt(2 pi); V any float vector.
template <class V>
inline V gelu_part(V x) {
  return x * normal_cdf_part(x);
}
template <class V>
inline V gelu_grad_part(V g, V x) {
  const V pdf = exp_nonpositive(-0.5f * (x * x)) * 0.398942280f;
  return g * (normal_cdf_part(x) + x * pdf);
}

// Over n elements, the last partial vector too: every element takes the same arithmetic,
// wherever the threads' ranges split the array. Whole vectors are native registers: without
// AVX-512 a 16-float value passes through memory between its halves' computations, which stalls
// on store forwarding (GELU took 1.5x as long on Zen 3); the tail takes a 16-float vector.
void gelu_fwd_block(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) storen(y + i, gelu_part(loadn(x + i)));
  if (i < n)
    store16_part(y + i, lanewise([](auto v) { return gelu_part(v); }, load16_part(x + i, n - i)), n - i);
}

void gelu_bwd_block(const float* g, const float* x, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) storen(dx + i, gelu_grad_part(loadn(g + i), loadn(x + i)));
  if (i < n)
    store16_part(dx + i,
                 lanewise([](auto g, auto v) { return gelu_grad_part(g, v); }, load16_part(g + i, n - i),
                          load16_part(x + i, n - i)),
                 n - i);
}

}  // namespace
}  // namespace ember::eltwise
