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

}  // namespace
}  // namespace ember
