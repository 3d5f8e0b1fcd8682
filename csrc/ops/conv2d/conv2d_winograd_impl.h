// The Winograd F(2x2, 3x3) tile transforms (conv2d_winograd.h) over GCC
// vector types.
//
// Included only by the per-ISA files (conv2d_winograd_<isa>.cpp), each
// compiling them with its own ISA's flags; everything is in an anonymous
// namespace, so each translation unit gets its own copy and none can be
// merged into another's.
//
// Sixteen tiles at a time: a row of input is loaded as 32 consecutive floats
// and split into its even and odd columns, which are column 0 and 1 (from
// offset 0) and 2 and 3 (from offset 2) of sixteen 4x4 blocks side by side.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/simd.h"
#include "ops/conv2d/conv2d_winograd.h"

namespace ember::conv2d {
namespace {

inline vf16 evens(vf16 a, vf16 b) {
  return __builtin_shuffle(a, b, vi16{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30});
}
inline vf16 odds(vf16 a, vf16 b) {
  return __builtin_shuffle(a, b, vi16{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31});
}
// Interleaves a (even columns) and b (odd columns) into 32 floats.
inline vf16 zip_lo(vf16 a, vf16 b) {
  return __builtin_shuffle(a, b, vi16{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23});
}
inline vf16 zip_hi(vf16 a, vf16 b) {
  return __builtin_shuffle(a, b, vi16{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31});
}

void input(const float* xp, int64_t cpg, int64_t wp, int64_t nti, int64_t tw, float* v) {
  const int64_t rows = 2 * nti + 2, tb = nti * tw;
  for (int64_t c = 0; c < cpg; ++c)
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += 16) {
        const int64_t n = std::min<int64_t>(16, tw - tj);
        vf16 d[4][4];
        for (int r = 0; r < 4; ++r) {
          const float* row = xp + (c * rows + 2 * ti + r) * wp + 2 * tj;
          const vf16 a = load16(row), b = load16(row + 16), a2 = load16(row + 2), b2 = load16(row + 18);
          d[r][0] = evens(a, b);
          d[r][1] = odds(a, b);
          d[r][2] = evens(a2, b2);
          d[r][3] = odds(a2, b2);
        }
        vf16 t[4][4];  // B^T d
        for (int q = 0; q < 4; ++q) {
          t[0][q] = d[0][q] - d[2][q];
          t[1][q] = d[1][q] + d[2][q];
          t[2][q] = d[2][q] - d[1][q];
          t[3][q] = d[1][q] - d[3][q];
        }
        float* out = v + c * tb + ti * tw + tj;
        const int64_t xs = cpg * tb;  // between consecutive xi
        for (int r = 0; r < 4; ++r) {  // (B^T d) B
          store16_part(out + (4 * r + 0) * xs, t[r][0] - t[r][2], n);
          store16_part(out + (4 * r + 1) * xs, t[r][1] + t[r][2], n);
          store16_part(out + (4 * r + 2) * xs, t[r][2] - t[r][1], n);
          store16_part(out + (4 * r + 3) * xs, t[r][1] - t[r][3], n);
        }
      }
}

void output(const float* m, int64_t opg, int64_t nti, int64_t tw, const float* bias, bool relu, int64_t i0,
                 int64_t oh, int64_t ow, int64_t plane, float* y) {
  const int64_t tb = nti * tw, xs = opg * tb;
  for (int64_t o = 0; o < opg; ++o) {
    const vf16 bv = splat(bias ? bias[o] : 0.0f);
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += 16) {
        const float* mt = m + o * tb + ti * tw + tj;
        vf16 u[2][4];  // A^T M
        for (int q = 0; q < 4; ++q) {
          const vf16 m0 = load16(mt + (0 + q) * xs), m1 = load16(mt + (4 + q) * xs);
          const vf16 m2 = load16(mt + (8 + q) * xs), m3 = load16(mt + (12 + q) * xs);
          u[0][q] = m0 + m1 + m2;
          u[1][q] = m1 - m2 - m3;
        }
        // Output columns 2*tj .. 2*tj + 31 (those inside the output).
        const int64_t j = 2 * tj, cols = std::min<int64_t>(32, ow - j);
        for (int a = 0; a < 2; ++a) {
          const int64_t i = i0 + 2 * ti + a;
          if (i >= oh) break;
          vf16 even = bv + u[a][0] + u[a][1] + u[a][2], odd = bv + u[a][1] - u[a][2] - u[a][3];
          if (relu) even = vrelu(even), odd = vrelu(odd);
          float* yr = y + o * plane + i * ow + j;
          store16_part(yr, zip_lo(even, odd), std::min<int64_t>(16, cols));
          if (cols > 16) store16_part(yr + 16, zip_hi(even, odd), cols - 16);
        }
      }
  }
}

void dy_transform(const float* dy, int64_t n_out, int64_t nti, int64_t tw, int64_t i0, int64_t oh, int64_t ow,
             int64_t plane, float* t) {
  const int64_t tb = nti * tw, xs = n_out * tb;
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += 16) {
        const int64_t n = std::min<int64_t>(16, tw - tj), j = 2 * tj, cols = std::min<int64_t>(32, ow - j);
        vf16 d[2][2];  // rows a, columns b of sixteen 2x2 blocks
        for (int a = 0; a < 2; ++a) {
          const int64_t i = i0 + 2 * ti + a;
          if (i >= oh) {
            d[a][0] = d[a][1] = vf16{};
            continue;
          }
          const float* row = dy + o * plane + i * ow + j;
          const vf16 lo = cols >= 16 ? load16(row) : load16_part(row, cols);
          const vf16 hi = cols >= 32 ? load16(row + 16) : cols > 16 ? load16_part(row + 16, cols - 16) : vf16{};
          d[a][0] = evens(lo, hi);
          d[a][1] = odds(lo, hi);
        }
        const vf16 half = splat(0.5f);
        vf16 r[4][2];  // G d
        for (int b = 0; b < 2; ++b) {
          r[0][b] = d[0][b];
          r[1][b] = half * (d[0][b] + d[1][b]);
          r[2][b] = half * (d[0][b] - d[1][b]);
          r[3][b] = d[1][b];
        }
        float* out = t + o * tb + ti * tw + tj;
        for (int q = 0; q < 4; ++q) {  // (G d) G^T
          store16_part(out + (4 * q + 0) * xs, r[q][0], n);
          store16_part(out + (4 * q + 1) * xs, half * (r[q][0] + r[q][1]), n);
          store16_part(out + (4 * q + 2) * xs, half * (r[q][0] - r[q][1]), n);
          store16_part(out + (4 * q + 3) * xs, r[q][1], n);
        }
      }
}

}  // namespace
}  // namespace ember::conv2d
