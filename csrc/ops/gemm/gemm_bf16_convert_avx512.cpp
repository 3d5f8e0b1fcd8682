// bf16 <-> fp32 conversion with AVX-512 (16 values per step, masked tails): the
// same bits as the portable loops of gemm_bf16_convert.cpp. (vcvtneps2bf16 is not
// used: it flushes subnormal inputs to zero.)
#include <immintrin.h>

#include "ops/gemm/gemm_bf16.h"

namespace ember::gemm {
namespace {

__mmask16 first_bits(int64_t n) { return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1); }

void to_bf16_avx512(const float* x, int64_t n, uint16_t* out) {
  const __m512i one = _mm512_set1_epi32(1), round = _mm512_set1_epi32(0x7fff), abs = _mm512_set1_epi32(0x7fffffff),
                inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x0040);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_bits(n - i);
    const __m512i bits = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(round, odd)), 16);
    const __m512i nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), quiet);
    const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, abs), inf);
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, nan)));
  }
}

void to_f32_avx512(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_bits(n - i);
    const __m512i wide = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i)), 16);
    _mm512_mask_storeu_ps(out + i, m, _mm512_castsi512_ps(wide));
  }
}

}  // namespace

const Bf16Convert bf16_convert_avx512 = {to_bf16_avx512, to_f32_avx512};

}  // namespace ember::gemm
