// AVX-512 pieces shared by the VNNI, VBMI and AMX kernel sets (all compiled with AVX-512 flags).
// Anonymous namespace: one copy per translation unit.
#pragma once

// GCC 12's AVX-512 headers build some results from a deliberately undefined vector
// (_mm512_undefined_*), which its own -Wuninitialized then reports (GCC bug 105593, fixed in
// GCC 13): silenced for the files that include the intrinsics through here first.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

// The lanes of 16-channel block `block` below n.
inline __mmask16 lanes_left(int64_t n, int64_t block) {
  const int64_t left = n - block * kBlock;
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
}

// The codebook in every 16-byte lane (for vpshufb), plus `offset` (128 makes the values unsigned).
inline __m512i codebook_table(int offset) {
  alignas(16) uint8_t lut[16];
  for (int i = 0; i < 16; ++i) lut[i] = static_cast<uint8_t>(kCodebook[i] + offset);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(lut)));
}

// The codebook values of a 64-byte octet of indices: its low nibbles (inputs 0-3 of each
// channel) and its high nibbles (inputs 4-7).
inline void codebook_values(__m512i table, __m512i v, __m512i& lo, __m512i& hi) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  lo = _mm512_shuffle_epi8(table, _mm512_and_si512(v, low4));
  hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
}

// One block's 16 sub-block scales of a super-block (qmatmul.h's 6-bit layout), as int32 lanes.
inline void sub_scales(const uint8_t* sb, __m512i* out) {
  const __m512i m63 = _mm512_set1_epi32(63), off = _mm512_set1_epi32(32);
  for (int p = 0; p < 4; ++p) {
    const uint8_t* rows = sb + 64 + 48 * p;
    const __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows)));
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 16)));
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + 32)));
    const __m512i u3 = _mm512_or_si512(_mm512_srli_epi32(a, 6),
                                       _mm512_or_si512(_mm512_slli_epi32(_mm512_srli_epi32(b, 6), 2),
                                                       _mm512_slli_epi32(_mm512_srli_epi32(c, 6), 4)));
    out[4 * p] = _mm512_sub_epi32(_mm512_and_si512(a, m63), off);
    out[4 * p + 1] = _mm512_sub_epi32(_mm512_and_si512(b, m63), off);
    out[4 * p + 2] = _mm512_sub_epi32(_mm512_and_si512(c, m63), off);
    out[4 * p + 3] = _mm512_sub_epi32(u3, off);
  }
}

}  // namespace
}  // namespace ember::qmatmul
