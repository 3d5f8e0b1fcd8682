// The Winograd F(2x2, 3x3) tile transforms (conv2d_winograd.h) over GCC
// vector types.
//
// Included only by the per-ISA files (conv2d_winograd_<isa>.cpp), each
// compiling them with its own ISA's flags; everything is in an anonymous
// namespace, so each translation unit gets its own copy and none can be
// merged into another's.
//
// kLanes tiles at a time, in native registers (16-float values without AVX-512
// round-trip through memory, and GCC kept arrays of them there): a row of
// input is loaded as 2 kLanes consecutive floats and split into its even and
// odd columns, which are column 0 and 1 (from offset 0) and 2 and 3 (from
// offset 2) of kLanes 4x4 blocks side by side.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/simd.h"
#include "ops/conv2d/conv2d_winograd.h"

namespace ember::conv2d {
namespace {

template <class F, size_t... I>
constexpr vin lane_indices(F f, std::index_sequence<I...>) {
  return vin{f(static_cast<int>(I))...};
}
constexpr auto kSeq = std::make_index_sequence<kLanes>{};
// Shuffle masks over the 2 kLanes lanes of (a, b): the even and odd ones, and a and b interleaved
// (the first and second halves of the result).
constexpr vin kEvens = lane_indices([](int p) { return 2 * p; }, kSeq);
constexpr vin kOdds = lane_indices([](int p) { return 2 * p + 1; }, kSeq);
constexpr vin kZipLo = lane_indices([](int p) { return (p % 2 ? kLanes : 0) + p / 2; }, kSeq);
constexpr vin kZipHi = lane_indices([](int p) { return (p % 2 ? kLanes : 0) + kLanes / 2 + p / 2; }, kSeq);

inline vfn evens(vfn a, vfn b) { return __builtin_shuffle(a, b, kEvens); }
inline vfn odds(vfn a, vfn b) { return __builtin_shuffle(a, b, kOdds); }
// Interleaves a (even columns) and b (odd columns) into 2 kLanes floats.
inline vfn zip_lo(vfn a, vfn b) { return __builtin_shuffle(a, b, kZipLo); }
inline vfn zip_hi(vfn a, vfn b) { return __builtin_shuffle(a, b, kZipHi); }

// The first n (< kLanes) floats at p, the rest zero; and the first n (<= kLanes) of r stored.
inline vfn loadn_part(const float* p, int64_t n) {
  float t[kLanes] = {};
  std::memcpy(t, p, sizeof(float) * n);
  return loadn(t);
}
inline void storen_part(float* p, vfn r, int64_t n) {
  if (n == kLanes) {
    storen(p, r);
    return;
  }
  float t[kLanes];
  storen(t, r);
  std::memcpy(p, t, sizeof(float) * n);
}

void input(const float* xp, int64_t cpg, int64_t wp, int64_t nti, int64_t tw, float* v) {
  const int64_t rows = 2 * nti + 2, tb = nti * tw;
  for (int64_t c = 0; c < cpg; ++c)
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, tw - tj);
        vfn d[4][4];
        for (int r = 0; r < 4; ++r) {
          const float* row = xp + (c * rows + 2 * ti + r) * wp + 2 * tj;
          const vfn a = loadn(row), b = loadn(row + kLanes), a2 = loadn(row + 2), b2 = loadn(row + kLanes + 2);
          d[r][0] = evens(a, b);
          d[r][1] = odds(a, b);
          d[r][2] = evens(a2, b2);
          d[r][3] = odds(a2, b2);
        }
        vfn t[4][4];  // B^T d
        for (int q = 0; q < 4; ++q) {
          t[0][q] = d[0][q] - d[2][q];
          t[1][q] = d[1][q] + d[2][q];
          t[2][q] = d[2][q] - d[1][q];
          t[3][q] = d[1][q] - d[3][q];
        }
        float* out = v + c * tb + ti * tw + tj;
        const int64_t xs = cpg * tb;  // between consecutive xi
        for (int r = 0; r < 4; ++r) {  // (B^T d) B
          storen_part(out + (4 * r + 0) * xs, t[r][0] - t[r][2], n);
          storen_part(out + (4 * r + 1) * xs, t[r][1] + t[r][2], n);
          storen_part(out + (4 * r + 2) * xs, t[r][2] - t[r][1], n);
          storen_part(out + (4 * r + 3) * xs, t[r][1] - t[r][3], n);
        }
      }
}

void output(const float* m, int64_t opg, int64_t nti, int64_t tw, const float* bias, bool relu, int64_t i0,
                 int64_t oh, int64_t ow, int64_t plane, float* y) {
  const int64_t tb = nti * tw, xs = opg * tb;
  for (int64_t o = 0; o < opg; ++o) {
    const vfn bv = splatn(bias ? bias[o] : 0.0f);
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += kLanes) {
        const float* mt = m + o * tb + ti * tw + tj;
        vfn u[2][4];  // A^T M
        for (int q = 0; q < 4; ++q) {
          const vfn m0 = loadn(mt + (0 + q) * xs), m1 = loadn(mt + (4 + q) * xs);
          const vfn m2 = loadn(mt + (8 + q) * xs), m3 = loadn(mt + (12 + q) * xs);
          u[0][q] = m0 + m1 + m2;
          u[1][q] = m1 - m2 - m3;
        }
        // Output columns 2*tj .. 2*tj + 2 kLanes - 1 (those inside the output).
        const int64_t j = 2 * tj, cols = std::min<int64_t>(2 * kLanes, ow - j);
        for (int a = 0; a < 2; ++a) {
          const int64_t i = i0 + 2 * ti + a;
          if (i >= oh) break;
          vfn even = bv + u[a][0] + u[a][1] + u[a][2], odd = bv + u[a][1] - u[a][2] - u[a][3];
          if (relu) even = vrelu(even), odd = vrelu(odd);
          float* yr = y + o * plane + i * ow + j;
          storen_part(yr, zip_lo(even, odd), std::min<int64_t>(kLanes, cols));
          if (cols > kLanes) storen_part(yr + kLanes, zip_hi(even, odd), cols - kLanes);
        }
      }
  }
}

void dy_transform(const float* dy, int64_t n_out, int64_t nti, int64_t tw, int64_t i0, int64_t oh, int64_t ow,
             int64_t plane, float* t) {
  const int64_t tb = nti * tw, xs = n_out * tb;
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t ti = 0; ti < nti; ++ti)
      for (int64_t tj = 0; tj < tw; tj += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, tw - tj), j = 2 * tj, cols = std::min<int64_t>(2 * kLanes, ow - j);
        vfn d[2][2];  // rows a, columns b of kLanes 2x2 blocks
        for (int a = 0; a < 2; ++a) {
          const int64_t i = i0 + 2 * ti + a;
          if (i >= oh) {
            d[a][0] = d[a][1] = vfn{};
            continue;
          }
          const float* row = dy + o * plane + i * ow + j;
          const vfn lo = cols >= kLanes ? loadn(row) : loadn_part(row, cols);
          const vfn hi = cols >= 2 * kLanes ? loadn(row + kLanes)
                         : cols > kLanes    ? loadn_part(row + kLanes, cols - kLanes)
                                            : vfn{};
          d[a][0] = evens(lo, hi);
          d[a][1] = odds(lo, hi);
        }
        const vfn half = splatn(0.5f);
        vfn r[4][2];  // G d
        for (int b = 0; b < 2; ++b) {
          r[0][b] = d[0][b];
          r[1][b] = half * (d[0][b] + d[1][b]);
          r[2][b] = half * (d[0][b] - d[1][b]);
          r[3][b] = d[1][b];
        }
        float* out = t + o * tb + ti * tw + tj;
        for (int q = 0; q < 4; ++q) {  // (G d) G^T
          storen_part(out + (4 * q + 0) * xs, r[q][0], n);
          storen_part(out + (4 * q + 1) * xs, half * (r[q][0] + r[q][1]), n);
          storen_part(out + (4 * q + 2) * xs, half * (r[q][0] - r[q][1]), n);
          storen_part(out + (4 * q + 3) * xs, r[q][1], n);
        }
      }
}

}  // namespace
}  // namespace ember::conv2d
