// The 2x2, stride-2 max-pooling row kernel for AVX2: 8 outputs per step. Each
// row's 16 inputs are split into even and odd columns (shufps within the
// 128-bit halves, then one cross-half permute), the four taps compared in the
// generic kernel's order with its rules (a tap wins when greater or NaN), and
// the winner's offset from r0[2j] (0, 1, w or w + 1) kept beside it for the
// int64 indices. The last outputs, fewer than 8, take the generic rules one by one.
#include <immintrin.h>

#include "ops/pool2d/pool2d.h"
#include "ops/pool2d/pool2d_rows.h"

namespace ember::pool2d {
namespace {

// v wins over best where v > best or v is NaN: a lane mask.
inline __m256 wins(__m256 v, __m256 best) {
  return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

// The even and odd columns of the 16 floats at p, each in order.
inline void split(const float* p, __m256& even, __m256& odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xDD);  // 0 2 8 10 4 6 12 14
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
}

void max2x2_row(const float* r0, const float* r1, int64_t ow, int64_t row0, int64_t w, float* y, int64_t* idx) {
  const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256 one = _mm256_castsi256_ps(_mm256_set1_epi32(1));
  const __m256 down = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(w)));
  const __m256 diag = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(w + 1)));
  int64_t j = 0;
  for (; j + 8 <= ow; j += 8) {
    __m256 t0, t1, t2, t3;
    split(r0 + 2 * j, t0, t1);
    split(r1 + 2 * j, t2, t3);
    __m256 best = t0, off = _mm256_setzero_ps();  // the offsets as int32 bits
    __m256 m = wins(t1, best);
    best = _mm256_blendv_ps(best, t1, m);
    off = _mm256_blendv_ps(off, one, m);
    m = wins(t2, best);
    best = _mm256_blendv_ps(best, t2, m);
    off = _mm256_blendv_ps(off, down, m);
    m = wins(t3, best);
    best = _mm256_blendv_ps(best, t3, m);
    off = _mm256_blendv_ps(off, diag, m);
    _mm256_storeu_ps(y + j, best);
    if (idx) {
      const __m256i col = _mm256_add_epi32(lane2, _mm256_castps_si256(off));  // 2 * lane + offset: 32 bits
      const __m256i base = _mm256_set1_epi64x(row0 + 2 * j);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j),
                          _mm256_add_epi64(base, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(col))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j + 4),
                          _mm256_add_epi64(base, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(col, 1))));
    }
  }
  max2x2_outputs(r0, r1, j, ow, row0, w, y, idx);
}

}  // namespace

extern const RowKernels row_kernels_avx2 = {max2x2_row};

}  // namespace ember::pool2d
