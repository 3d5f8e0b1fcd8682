// Quantizing and packing a float weight into the layout of qmatmul.h (see its contract).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/threads.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The largest magnitude of w[0, count) in double (NaN and infinity refused before).
double amax(const float* w, int64_t count) {
  double m = 0.0;
  for (int64_t j = 0; j < count; ++j) m = std::max(m, std::fabs(static_cast<double>(w[j])));
  return m;
}

// round_half_even(v / scale) clipped to [-limit, limit], in double.
double level(double v, double scale, double limit) { return std::clamp(std::nearbyint(v / scale), -limit, limit); }

// A float scale for a positive value: at least the smallest positive float, so that weights too
// small for a normal scale (below ~1e-36) still get one (> 0, as the format requires).
float positive_scale(double v) { return std::max(static_cast<float>(v), std::numeric_limits<float>::denorm_min()); }

constexpr double kE6m10Max = 8585740288.0;  // 2^33 * (1 - 2^-11): the largest e6m10 scale

// The bits of the smallest e6m10 scale at or above 0 < d <= kE6m10Max (the smallest, 2^-31, below it).
uint16_t e6m10_at_least(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) < d) f = std::nextafter(f, HUGE_VALF);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (bits & 0x1FFFu) bits = (bits | 0x1FFFu) + 1;  // positive: up in magnitude is up
  if (bits < kE6m10Bias) return 0;
  return static_cast<uint16_t>((bits - kE6m10Bias) >> 13);
}

// round_half_even(v) for |v| < 2^51, as nearbyint in the default rounding mode but without a
// library call (this file is built for any x86-64; without -ffast-math the compiler keeps both
// additions).
inline double round_even(double v) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (v + kMagic) - kMagic;
}

// A grouped int8 value: round_half_even(v * (1 / scale)) clipped to +-127 (a multiplication, not
// a division: the scale search below evaluates it 32 times per weight).
inline double int8g_level(double v, double inv) { return std::clamp(round_even(v * inv), -127.0, 127.0); }

// The e6m10 scale (bits) of least squared error for the values v[0, count) with max |v| = m > 0:
// among the 32 grid points from 4 below max|v| / 127 rounded up to 27 above, each rounding v
// against itself (clipped to +-127). Rounding up alone leaves the largest value off its level by
// up to 2^-10 of it; the search also picks, of near-equal steps, the one that lands the group's
// values nearest their levels (9% less error than max|v| / 127 on Gaussian weights).
uint16_t int8g_scale(const double* v, int64_t count, double m) {
  const int up = e6m10_at_least(m / 127);
  uint16_t best = static_cast<uint16_t>(up);
  double best_err = -1.0;
  for (int h = std::max(0, up - 4); h <= std::min(0xFFFF, up + 27); ++h) {
    const double scale = e6m10_value(static_cast<uint16_t>(h)), inv = 1.0 / scale;
    double err = 0.0;
    for (int64_t j = 0; j < count; ++j) {
      const double d = int8g_level(v[j], inv) * scale - v[j];
      err += d * d;
    }
    if (best_err < 0.0 || err < best_err) best = static_cast<uint16_t>(h), best_err = err;
  }
  return best;
}

}  // namespace

PackedSizes packed_sizes_int8g(int64_t n, int64_t k, int64_t group) {
  const int64_t n16 = round_up(n, kBlock), kp = round_up(k, group);
  return {n16 * kp, n16 * (kp / group), 0};
}

void quantize_pack_int8g(const float* w, int64_t n, int64_t k, int64_t ldw, int64_t group, uint8_t* data,
                         uint16_t* scales, int nthreads) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) {
      EMBER_CHECK_VALUE(std::isfinite(w[r * ldw + j]), "the weight holds NaN or infinite values (row ", r,
                        ", column ", j, ")");
      EMBER_CHECK_VALUE(std::fabs(w[r * ldw + j]) <= 127 * kE6m10Max, "the weight's value ", w[r * ldw + j],
                        " (row ", r, ", column ", j, ") is beyond grouped int8's range (|w| <= 1.09e12)");
    }
  const int64_t n16 = round_up(n, kBlock), kp = round_up(k, group), groups = kp / group;
  constexpr uint16_t kOne = 31 << 10;  // 1.0: the scale of padding and of all-zero groups
  std::fill(data, data + n16 * kp, uint8_t(128));
  std::fill(scales, scales + n16 * groups, kOne);
  parallel_ranges(n, nthreads, 16, [&](int64_t r0, int64_t r1) {
    std::vector<double> v(static_cast<size_t>(group));
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* block = data + r / kBlock * (kp * kBlock) + r % kBlock * 4;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j0 = g * group, valid = std::max<int64_t>(0, std::min(group, k - j0));
        for (int64_t j = 0; j < valid; ++j) v[j] = static_cast<double>(w[r * ldw + j0 + j]);
        const double m = amax(w + r * ldw + j0, valid);
        const uint16_t bits = m > 0 ? int8g_scale(v.data(), valid, m) : kOne;
        scales[(r / kBlock * groups + g) * kBlock + r % kBlock] = bits;
        const double inv = 1.0 / e6m10_value(bits);
        for (int64_t j = 0; j < valid; ++j)
          block[(j0 + j) / 4 * 64 + (j0 + j) % 4] = static_cast<uint8_t>(static_cast<int>(int8g_level(v[j], inv)) + 128);
      }
    }
  });
}

PackedSizes packed_sizes(int64_t n, int64_t k, int bits, int64_t group) {
  const int64_t n16 = round_up(n, kBlock);
  if (bits == 8) return {n16 * round_up(k, 4), n16, n16};
  const int64_t kp = round_up(k, group);
  return {n16 * kp / 2, n16 * (kp / group), 0};
}

void quantize_pack(const float* w, int64_t n, int64_t k, int64_t ldw, int bits, int64_t group, void* data,
                   float* scales, int32_t* colsum, int nthreads) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j)
      EMBER_CHECK_VALUE(std::isfinite(w[r * ldw + j]), "the weight holds NaN or infinite values (row ", r,
                        ", column ", j, ")");
  const int64_t n16 = round_up(n, kBlock);
  if (bits == 8) {
    const int64_t kp = round_up(k, 4);
    auto* q = static_cast<int8_t*>(data);
    std::fill(q, q + n16 * kp, int8_t(0));
    std::fill(scales, scales + n16, 1.0f);
    std::fill(colsum, colsum + n16, 0);
    parallel_ranges(n, nthreads, 16, [&](int64_t r0, int64_t r1) {  // rows apart: no byte written twice
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = w + r * ldw;
        const double m = amax(row, k);
        scales[r] = m > 0 ? positive_scale(m / 127) : 1.0f;  // an all-zero row keeps scale 1
        const double s = scales[r];
        int8_t* block = q + r / kBlock * (kp * kBlock) + r % kBlock * 4;
        for (int64_t j = 0; j < k; ++j) {
          const auto v = static_cast<int8_t>(level(row[j], s, 127));
          block[j / 4 * 64 + j % 4] = v;
          colsum[r] += v;
        }
      }
    });
    return;
  }
  // int4: each group's scale is the one among a few clipping levels (max|w| / 7 shrunk by up to
  // 25%) whose rounding error is smallest: with 15 levels, clipping a rare outlier often buys
  // finer steps for all the other weights.
  static constexpr double kShrink[] = {1.0, 0.95, 0.9, 0.85, 0.8, 0.75};
  const int64_t kp = round_up(k, group), groups = kp / group;
  auto* packed = static_cast<uint8_t*>(data);
  std::fill(packed, packed + n16 * kp / 2, uint8_t(0x88));  // zeros: 8 in each nibble
  std::fill(scales, scales + n16 * groups, 1.0f);
  parallel_ranges(n, nthreads, 16, [&](int64_t r0, int64_t r1) {  // rows apart: no byte written twice
    std::vector<double> wg(static_cast<size_t>(group));
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t j0 = g * group, valid = std::max<int64_t>(0, std::min(group, k - j0));
        for (int64_t j = 0; j < group; ++j) wg[j] = j < valid ? static_cast<double>(w[r * ldw + j0 + j]) : 0.0;
        const double m = amax(w + r * ldw + j0, valid);
        float best = 1.0f;
        double best_err = 0.0;
        for (size_t level_i = 0; level_i < std::size(kShrink); ++level_i) {
          const float scale = m > 0 ? positive_scale(m * kShrink[level_i] / 7) : 1.0f;
          const double s = scale;
          double err = 0.0;
          for (int64_t j = 0; j < group; ++j) {
            const double d = level(wg[j], s, 7) * s - wg[j];
            err += d * d;
          }
          if (level_i == 0 || err < best_err) best = scale, best_err = err;
        }
        scales[(r / kBlock * groups + g) * kBlock + r % kBlock] = best;
        for (int64_t j = 0; j < valid; ++j) {
          const int64_t kk = j0 + j, octet = kk / 8, half = kk % 8 / 4, lane = kk % 4;
          const auto u = static_cast<uint8_t>(static_cast<int>(level(wg[j], best, 7)) + 8);
          uint8_t& byte = packed[((r / kBlock * (kp / 8) + octet) * kBlock + r % kBlock) * 4 + lane];
          byte = half ? static_cast<uint8_t>((byte & 0x0F) | (u << 4)) : static_cast<uint8_t>((byte & 0xF0) | u);
        }
      }
  });
}

}  // namespace ember::qmatmul
