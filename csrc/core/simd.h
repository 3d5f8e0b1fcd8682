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
#include <tuple>
#include <utility>

namespace ember {
namespace {

typedef float vf16 __attribute__((vector_size(64)));
typedef int vi16 __attribute__((vector_size(64)));
typedef float vf16u __attribute__((vector_size(64), aligned(4), may_alias));

// The native vector: one register of this ISA's (16 floats with AVX-512, 8 with AVX, 4 otherwise),
// for register-blocked kernels written over kLanes.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float vfn __attribute__((vector_size(4 * kLanes)));
typedef int vin __attribute__((vector_size(4 * kLanes)));
typedef float vfnu __attribute__((vector_size(4 * kLanes), aligned(4), may_alias));
inline vfn loadn(const float* p) { return *reinterpret_cast<const vfnu*>(p); }
inline void storen(float* p, vfn v) { *reinterpret_cast<vfnu*>(p) = v; }
// s in every lane: one vbroadcastss, where `vfn{} + s` costs a scalar add first (0 + s is not s
// for s = -0, so the compiler may not drop it).
template <size_t... I>
inline vfn splatn_impl(float s, std::index_sequence<I...>) {
  return vfn{((void)I, s)...};
}
inline vfn splatn(float s) { return splatn_impl(s, std::make_index_sequence<kLanes>{}); }

// lanewise(f, a, b, ...) = f(a, b, ...) for a generic f of vectors (`auto` parameters), with
// comparisons and ?: in it; a, b, ... 16-float or native vectors. Without AVX-512, GCC has no
// register for 16 floats: it splits arithmetic into native parts, but expands a comparison or a
// ?: on 16 lanes into scalar code (one lane at a time, several times slower); so there f runs
// on each native part.
// (Arrays of 16-float vectors fare no better there: GCC keeps them in memory, so
// register-blocked kernels are written over the native vfn instead.)
#ifdef __AVX512F__
template <class F, class... V>
inline auto lanewise(F f, V... v) {
  return f(v...);
}
#else
constexpr int kSplit = 16 / kLanes;
template <class V, class T = decltype(V{}[0] + 0)>
union Split {  // a 16-lane vector as native parts
  typedef T part __attribute__((vector_size(64 / kSplit)));
  V whole;
  part p[kSplit];
};
template <class F, class... V>
inline auto lanewise_parts(F f, V... v) {
  typedef decltype(f(v...)) R;
  Split<R> out;
  const auto parts = std::make_tuple(Split<V>{v}...);
  for (int i = 0; i < kSplit; ++i)
    out.p[i] = std::apply([&](const auto&... s) { return f(s.p[i]...); }, parts);
  return out.whole;
}
template <class F, class V0, class... V>
inline auto lanewise(F f, V0 v0, V... v) {
  if constexpr (sizeof(V0) == sizeof(vfn)) return f(v0, v...);  // already native
  else return lanewise_parts(f, v0, v...);
}
#endif

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

// max(x, 0) with NaN passed through (it compares false); V the native vector or 16 floats.
template <class V>
inline V vrelu(V x) {
  return lanewise([](auto r) { return r < 0.0f ? decltype(r){} : r; }, x);
}

// exp(x) for x <= 0 (or NaN), which needs no overflow handling: x = (k + f) ln2
// with k the nearest integer to x log2(e) (the 1.5 * 2^23 trick, exact for
// |x log2 e| < 2^22) and |f| <= 1/2, 2^f by a degree-6 polynomial (within 2 ulp
// of expf), 2^k from the exponent bits; exact 0 below the float range (so -inf
// gives 0), NaN in gives NaN out. About 14 vector operations, against 25 for a
// general exp with both clamps.
template <class V>
inline V exp_nonpositive(V x) {  // x <= 0 or NaN; V any float vector (a native part inside lanewise)
  typedef decltype(x < x) VI;    // the int vector of V's width
  const float lo = -87.3365f;
  const V xc = x < lo ? V{} + lo : x;  // NaN compares false: it stays
  const V t = xc * 1.44269504088896341f;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer, ties to even
  const V kf = (t + magic) - magic;
  const V f = t - kf;  // in [-1/2, 1/2]
  // 2^f, minimax on [-1/2, 1/2].
  V p = V{} + 1.54697321e-4f;
  p = p * f + 1.34004322e-3f;
  p = p * f + 9.61802560e-3f;
  p = p * f + 5.55032721e-2f;
  p = p * f + 2.40226512e-1f;
  p = p * f + 6.93147207e-1f;
  p = p * f + 1.0f;
  // 2^k from the exponent bits (k in [-126, 0] after the clamp).
  const VI bits = (__builtin_convertvector(kf, VI) + 127) << 23;
  V two_k;
  std::memcpy(&two_k, &bits, sizeof(two_k));
  const V y = p * two_k;
  return x < lo ? V{} : y;  // underflow (and -inf) -> 0; NaN passes through y
}
inline vf16 vexp_nonpositive(vf16 x) {
  return lanewise([](auto v) { return exp_nonpositive(v); }, x);
}

}  // namespace
}  // namespace ember
