// Quantizing and packing a float weight into the int4 codebook format of qmatmul.h.
#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/threads.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {

// A 16-level quantizer fitted (Lloyd's algorithm under the per-sub-block scale search below) to
// sub-blocks of Gaussian weights; no zero, so that a sign flip of the scale mirrors it.
const int8_t kCodebook[16] = {-127, -102, -82, -65, -49, -35, -22, -10, 1, 13, 25, 38, 52, 67, 85, 109};

namespace {

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The index of the codebook value nearest z (ties to the lower one), by table. The codebook's
// values are integers, so each midpoint between neighbours is h / 2 for an integer h, and z lies
// above it exactly when ceil(2 z) - 1 >= h: the index is the number of midpoints with h at most
// c = ceil(2 z) - 1, looked up by c. 2 z is clamped first to [-256, 256], past every midpoint
// (|h| <= 229), so the clamp changes no index; a NaN takes the lowest, as no midpoint is below it.
struct NearestTable {
  static constexpr int kLimit = 256;            // |2 z| clamped to this
  static constexpr int kOffset = kLimit + 1;    // c = ceil(2 z) - 1 ranges over [-257, 255]
  int8_t index[2 * kLimit + 1];
  NearestTable() {
    for (int c = -kOffset; c < kLimit; ++c) {
      int count = 0;
      for (int i = 0; i < 15; ++i) count += kCodebook[i] + kCodebook[i + 1] <= c;
      index[c + kOffset] = static_cast<int8_t>(count);
    }
  }
};
const NearestTable kNearest;

inline int nearest(double z) {
  double z2 = 2.0 * z;
  z2 = z2 > -NearestTable::kLimit ? z2 : -NearestTable::kLimit;  // NaN too
  z2 = z2 < NearestTable::kLimit ? z2 : NearestTable::kLimit;
  const int t = static_cast<int>(z2);                              // toward zero, then up: ceil
  const int c = t + (t < z2) - 1;
  return kNearest.index[c + NearestTable::kOffset];
}

// The squared error of v[0, 16) with every value at its nearest codebook level times scale.
double error_at(const double* v, double scale) {
  if (scale == 0.0) {
    double err = 0.0;
    for (int i = 0; i < kSub; ++i) err += v[i] * v[i];
    return err;
  }
  const double inv = 1.0 / scale;
  double err = 0.0;
  for (int i = 0; i < kSub; ++i) {
    const double d = kCodebook[nearest(v[i] * inv)] * scale - v[i];
    err += d * d;
  }
  return err;
}

// Scales tried per sign: 8 err 0.3% less than 4 on Gaussian weights, 16 no less than 8.
constexpr int kTries = 6;

// The sub-block's float scale: for each sign and a few multiples of max|v| / 127, the indices
// chosen, the scale refit to them by least squares, the indices chosen again; least error wins.
double sub_scale(const double* v) {
  double amax = 0.0;
  for (int i = 0; i < kSub; ++i) amax = std::max(amax, std::fabs(v[i]));
  if (amax == 0.0) return 0.0;
  double best = 0.0, best_err = INFINITY;
  for (double sign : {1.0, -1.0})
    for (int t = 0; t < kTries; ++t) {
      const double inv = 127 / (sign * amax * (0.8 + 0.4 * t / (kTries - 1)));
      double vq = 0.0, qq = 0.0;
      for (int i = 0; i < kSub; ++i) {
        const double q = kCodebook[nearest(v[i] * inv)];
        vq += v[i] * q;
        qq += q * q;
      }
      const double scale = vq / qq;  // qq > 0: the codebook has no zero
      if (scale == 0.0) continue;
      const double err = error_at(v, scale);
      if (err < best_err) best = scale, best_err = err;
    }
  return best;
}

// One channel's super-block (256 values, zero-padded): its float scale and 6-bit scales.
void quantize_super(const double* v, float& d_out, int32_t* c_out) {
  double scale[kSuper / kSub], dmax = 0.0;
  for (int j = 0; j < kSuper / kSub; ++j) {
    scale[j] = sub_scale(v + j * kSub);
    dmax = std::max(dmax, std::fabs(scale[j]));
  }
  const float d = static_cast<float>(dmax / 31);
  d_out = d;
  for (int j = 0; j < kSuper / kSub; ++j) {
    if (d == 0.0f) {  // an all-zero super-block (or one of subnormal weights)
      c_out[j] = 0;
      continue;
    }
    const int32_t r = static_cast<int32_t>(std::clamp(std::nearbyint(scale[j] / d), -32.0, 31.0));
    int32_t best = r;
    double best_err = error_at(v + j * kSub, double(d) * r);
    for (int32_t c : {r - 1, r + 1}) {
      if (c < -32 || c > 31) continue;
      const double err = error_at(v + j * kSub, double(d) * c);
      if (err < best_err) best = c, best_err = err;
    }
    c_out[j] = best;
  }
}

}  // namespace

PackedSizes packed_sizes_cb(int64_t n, int64_t k) {
  const int64_t n16 = round_up(n, kBlock), kp = round_up(k, kSub);
  return {n16 * kp / 2, n16 / kBlock * (round_up(k, kSuper) / kSuper) * kCbScaleBytes, 0};
}

void quantize_pack_cb(const float* w, int64_t n, int64_t k, int64_t ldw, uint8_t* data, uint8_t* scales,
                      int nthreads) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j)
      EMBER_CHECK_VALUE(std::isfinite(w[r * ldw + j]), "the weight holds NaN or infinite values (row ", r,
                        ", column ", j, ")");
  const int64_t n16 = round_up(n, kBlock), kp = round_up(k, kSub), supers = round_up(k, kSuper) / kSuper;
  const int64_t blocks = n16 / kBlock;
  // Padding: index 8 (the codebook's value nearest zero) under a zero scale.
  std::fill(data, data + n16 * kp / 2, uint8_t(0x88));
  parallel_ranges(blocks, nthreads, 1, [&](int64_t b0, int64_t b1) {
    double v[kSuper];
    int32_t c[kSuper / kSub];
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t s = 0; s < supers; ++s) {
        uint8_t* sb = scales + (b * supers + s) * kCbScaleBytes;
        std::fill(sb, sb + kCbScaleBytes, uint8_t(0));
        for (int64_t l = 0; l < kBlock; ++l) {
          const int64_t row = b * kBlock + l, k0 = s * kSuper;
          float d = 0.0f;
          std::fill(c, c + kSuper / kSub, 0);
          if (row < n) {
            for (int64_t i = 0; i < kSuper; ++i) v[i] = k0 + i < k ? static_cast<double>(w[row * ldw + k0 + i]) : 0.0;
            quantize_super(v, d, c);
            for (int64_t i = 0; i < kSuper && k0 + i < k; ++i) {
              const double scale = double(d) * c[i / kSub];
              const int q = scale != 0.0 ? nearest(v[i] / scale) : 8;
              const int64_t kk = k0 + i, octet = kk / 8, half = kk % 8 / 4, lane = kk % 4;
              uint8_t& byte = data[((b * (kp / 8) + octet) * kBlock + l) * 4 + lane];
              byte = half ? static_cast<uint8_t>((byte & 0x0F) | (q << 4)) : static_cast<uint8_t>((byte & 0xF0) | q);
            }
          }
          std::memcpy(sb + 4 * l, &d, 4);
          for (int p = 0; p < 4; ++p) {
            const int32_t u0 = c[4 * p] + 32, u1 = c[4 * p + 1] + 32, u2 = c[4 * p + 2] + 32, u3 = c[4 * p + 3] + 32;
            uint8_t* rows = sb + 64 + 48 * p;
            rows[l] = static_cast<uint8_t>(u0 | (u3 & 3) << 6);
            rows[16 + l] = static_cast<uint8_t>(u1 | (u3 >> 2 & 3) << 6);
            rows[32 + l] = static_cast<uint8_t>(u2 | (u3 >> 4) << 6);
          }
        }
      }
  });
}

}  // namespace ember::qmatmul
