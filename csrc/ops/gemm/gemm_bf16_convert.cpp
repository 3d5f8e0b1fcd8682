// The bf16 <-> fp32 conversions, portable loops (the generic level's; gemm_bf16_convert_avx512.cpp
// has the AVX-512 ones).
#include <cstring>

#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {

namespace {
float widen(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
}  // namespace

void f32_from_bf16(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = widen(x[i]);
}

void bf16_from_f32(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit. An overflow past the
    // largest finite value correctly becomes infinity.
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    // A NaN keeps its sign and the top of its payload, made quiet (rounding could carry it into
    // infinity).
    const uint32_t nan = (bits >> 16) | 0x0040u;
    out[i] = static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

const Bf16Convert bf16_convert_generic = {bf16_from_f32, f32_from_bf16};

}  // namespace ember::gemm
