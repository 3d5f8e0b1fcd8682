// Portable 16-float vectors for kernels written once and compiled per ISA.
//
// A GCC vector of 16 floats is one zmm with AVX-512, two ymm with AVX2 and
// four xmm otherwise, so one source serves every *_<isa>.cpp file that
// includes it. Included only by such per-ISA files (through their kernels'
// *_impl.h): everything is in an anonymous namespace so each translation unit
// gets its own copy, compiled with its own flags, and none can be merged into
// another's.
#pragma once

#include <cstdint>
#include <cstring>

namespace ember {
namespace {

typedef float vf16 __attribute__((vector_size(64)));
typedef int vi16 __attribute__((vector_size(64)));
typedef float vf16u __attribute__((vector_size(64), aligned(4), may_alias));

inline vf16 splat(float s) { return vf16{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}; }
inline vf16 load16(const float* p) { return *reinterpret_cast<const vf16u*>(p); }
inline void store16(float* p, vf16 v) { *reinterpret_cast<vf16u*>(p) = v; }

// The first n (< 16) floats at p, the rest zero.
inline vf16 load16_part(const float* p, int64_t n) {
  float t[16] = {};
  std::memcpy(t, p, sizeof(float) * n);
  return load16(t);
}

// Stores the first n (<= 16) floats of r.
inline void store16_part(float* p, vf16 r, int64_t n) {
  if (n == 16) {
    store16(p, r);
    return;
  }
  float t[16];
  store16(t, r);
  std::memcpy(p, t, sizeof(float) * n);
}

inline vf16 vmax(vf16 a, vf16 b) { return a > b ? a : b; }

// exp(x) for x <= 0 (or NaN), which needs no overflow handling: x = (k + f) ln2
// with k the nearest integer to x log2(e) (the 1.5 * 2^23 trick, exact for
// |x log2 e| < 2^22) and |f| <= 1/2, 2^f by a degree-6 polynomial (within 2 ulp
// of expf), 2^k from the exponent bits; exact 0 below the float range (so -inf
// gives 0), NaN in gives NaN out. About 14 vector operations, against 25 for a
// general exp with both clamps.
inline vf16 vexp_nonpositive(vf16 x) {  // x <= 0 or NaN
  const vf16 lo = splat(-87.3365f);
  const vf16 xc = x < lo ? lo : x;  // NaN compares false: it stays
  const vf16 t = xc * splat(1.44269504088896341f);
  const vf16 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer, ties to even
  const vf16 kf = (t + magic) - magic;
  const vf16 f = t - kf;  // in [-1/2, 1/2]
  // 2^f, minimax on [-1/2, 1/2].
  vf16 p = splat(1.54697321e-4f);
  p = p * f + splat(1.34004322e-3f);
  p = p * f + splat(9.61802560e-3f);
  p = p * f + splat(5.55032721e-2f);
  p = p * f + splat(2.40226512e-1f);
  p = p * f + splat(6.93147207e-1f);
  p = p * f + splat(1.0f);
  // 2^k from the exponent bits (k in [-126, 0] after the clamp).
  const vi16 bits = (__builtin_convertvector(kf, vi16) + 127) << 23;
  vf16 two_k;
  std::memcpy(&two_k, &bits, sizeof(two_k));
  const vf16 y = p * two_k;
  return x < lo ? splat(0.0f) : y;  // underflow (and -inf) -> 0; NaN passes through y
}

}  // namespace
}  // namespace ember
