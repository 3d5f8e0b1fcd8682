// AVX-512 row kernel for 2x2, stride-2 max pooling: 16 outputs per step.
//
// Two zmm loads per input row give 32 values; two-source permutes split them
// into the even and odd columns, so the four taps of 16 windows sit in four
// registers. The taps are then folded in window order with PyTorch's rule
// (v > best or v is NaN) as mask compares and blends, tracking which tap won,
// from which the int64 argmax index is built. A partial last step is masked.
// Reads each input row once and writes each output (and index) once.
#include <immintrin.h>

#include "ops/pool2d/pool2d.h"

// GCC 12's AVX-512 headers build masked values from a deliberately undefined
// register, which -W(maybe-)uninitialized reports at every call site.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace ember::pool2d {
namespace {

// v wins over best when v > best or v is NaN.
inline __mmask16 wins(__m512 v, __m512 best) {
  return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

void max2x2_row(const float* r0, const float* r1, int64_t ow, int64_t row0, int64_t w, float* y, int64_t* idx) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i lane = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t j = 0; j < ow; j += 16) {
    // A last, partial step masks its loads (2 * n input columns) and stores (n outputs).
    const int n = ow - j < 16 ? static_cast<int>(ow - j) : 16;
    const __mmask16 lo = n >= 8 ? 0xFFFF : static_cast<__mmask16>((1u << (2 * n)) - 1u);
    const __mmask16 hi = n <= 8 ? 0 : n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << (2 * n - 16)) - 1u);
    const __mmask16 out = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1u);
    const float* a = r0 + 2 * j;
    const float* b = r1 + 2 * j;
    const __m512 a0 = _mm512_maskz_loadu_ps(lo, a), a1 = _mm512_maskz_loadu_ps(hi, a + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lo, b), b1 = _mm512_maskz_loadu_ps(hi, b + 16);
    const __m512 t0 = _mm512_permutex2var_ps(a0, even, a1);  // (0, 0)
    const __m512 t1 = _mm512_permutex2var_ps(a0, odd, a1);   // (0, 1)
    const __m512 t2 = _mm512_permutex2var_ps(b0, even, b1);  // (1, 0)
    const __m512 t3 = _mm512_permutex2var_ps(b0, odd, b1);   // (1, 1)
    // Offset of the winning tap from r0[2j + 2 * lane]: 0, 1, w or w + 1.
    __m512 best = t0;
    __m512i off = _mm512_setzero_si512();
    __mmask16 m = wins(t1, best);
    best = _mm512_mask_blend_ps(m, best, t1);
    off = _mm512_mask_blend_epi32(m, off, _mm512_set1_epi32(1));
    m = wins(t2, best);
    best = _mm512_mask_blend_ps(m, best, t2);
    off = _mm512_mask_blend_epi32(m, off, _mm512_set1_epi32(static_cast<int>(w)));
    m = wins(t3, best);
    best = _mm512_mask_blend_ps(m, best, t3);
    off = _mm512_mask_blend_epi32(m, off, _mm512_set1_epi32(static_cast<int>(w + 1)));
    _mm512_mask_storeu_ps(y + j, out, best);
    if (idx) {
      const __m512i col = _mm512_add_epi32(lane, off);  // 2 * lane + offset, fits in 32 bits
      const __m512i base = _mm512_set1_epi64(row0 + 2 * j);
      _mm512_mask_storeu_epi64(idx + j, static_cast<__mmask8>(out),
                               _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(col))));
      _mm512_mask_storeu_epi64(idx + j + 8, static_cast<__mmask8>(out >> 8),
                               _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(col, 1))));
    }
  }
}

}  // namespace

extern const RowKernels row_kernels_avx512 = {max2x2_row};

}  // namespace ember::pool2d
