// The bf16 convolution's im2col packer (conv2d_bf16.cpp): AVX-512 (masked 16-bit loads), called
// only at the levels with bf16 products.
#include <immintrin.h>

#include <algorithm>

#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::conv2d {

using gemm::kBf16Tile;

void pack_im2col_bf16(const void* ctx, int64_t c0, int64_t tiles, int64_t kt, uint16_t* out) {
  const Im2colBf16& m = *static_cast<const Im2colBf16*>(ctx);
  const Geometry& g = *m.g;
  const int64_t K = g.c * g.kh * g.kw, pixels = g.oh * g.ow;
  for (int64_t t = 0; t < tiles; t += 2) {
    const int64_t strip0 = c0 + 16 * t, width = std::min<int64_t>(32, 16 * (tiles - t));
    // The strip's pixels as runs within output rows: (first lane, lanes, output row, output column).
    int64_t run_j[40], run_n[40], run_i[40], run_o[40], runs = 0;
    for (int64_t j = 0; j < width && strip0 + j < pixels; ++runs) {
      const int64_t pix = strip0 + j, i = pix / g.ow, o0 = pix % g.ow;
      const int64_t n = std::min(width - j, std::min(g.ow - o0, pixels - pix));
      run_j[runs] = j, run_n[runs] = n, run_i[runs] = i, run_o[runs] = o0;
      j += n;
    }
    // Row k of the strip: each run read with one masked load at unit stride (lanes outside the image
    // or the run stay zero and are never read), element by element otherwise.
    auto row = [&](int64_t k, uint16_t* scratch) -> __m512i {
      __m512i v = _mm512_setzero_si512();
      if (k >= K) return v;
      const uint16_t* xc = m.x + m.tap[3 * k];
      const int64_t pdh = m.tap[3 * k + 1], qdw = m.tap[3 * k + 2];
      for (int64_t r = 0; r < runs; ++r) {
        const int64_t ih = run_i[r] * g.sh - g.pt + pdh;
        if (ih < 0 || ih >= g.h) continue;
        const int64_t iw0 = run_o[r] * g.sw - g.pl + qdw;  // input column of the run's first lane
        if (g.sw == 1) {
          const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(run_n[r], g.w - iw0);
          if (hi <= lo) continue;
          const __mmask32 mask = static_cast<__mmask32>(((uint64_t{1} << (hi - lo)) - 1) << (run_j[r] + lo));
          v = _mm512_mask_loadu_epi16(v, mask, xc + ih * g.w + iw0 - run_j[r]);
        } else {
          _mm512_storeu_si512(scratch, v);
          for (int64_t l = 0; l < run_n[r]; ++l) {
            const int64_t iw = iw0 + l * g.sw;
            if (iw >= 0 && iw < g.w) scratch[run_j[r] + l] = xc[ih * g.w + iw];
          }
          v = _mm512_loadu_si512(scratch);
        }
      }
      return v;
    };
    alignas(64) uint16_t scratch[32];
    uint16_t* tile0 = out + t * kt * kBf16Tile;
    for (int64_t k = 0; k < kt * 32; k += 2) {
      const __m512i r0 = row(k, scratch), r1 = row(k + 1, scratch);
      const int64_t o = (k / 32) * kBf16Tile + (k % 32) / 2 * 32;
      for (int h = 0; h < 2; ++h) {  // columns 0-15 to the first tile, 16-31 to the second
        const __m512i lo = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r0, h));
        const __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r1, h));
        if (t + h < tiles)
          _mm512_store_si512(tile0 + h * kt * kBf16Tile + o, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
  }
}

}  // namespace ember::conv2d
