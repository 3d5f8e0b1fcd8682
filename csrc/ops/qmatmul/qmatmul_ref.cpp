// The references: the packed weights read back one value at a time, the
// activations quantized by the documented formula, int64 accumulators, the
// documented epilogue. No threads, no vectors.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

int32_t int8_at(const Int8Weight& w, int64_t n, int64_t k) {
  const int64_t b = n / kBlock, c = n % kBlock;
  return w.data[(b * (w.kp / 4) + k / 4) * 64 + 4 * c + k % 4];
}

int32_t int8g_at(const Int8GWeight& w, int64_t n, int64_t k) {
  const int64_t b = n / kBlock, c = n % kBlock;
  return int32_t(w.data[(b * (w.kp / 4) + k / 4) * 64 + 4 * c + k % 4]) - 128;
}

int32_t int4_at(const Int4Weight& w, int64_t n, int64_t k) {
  const int64_t b = n / kBlock, c = n % kBlock, o = k / 8, j = k % 8;
  const uint8_t byte = w.data[(b * (w.kp / 8) + o) * 64 + 4 * c + j % 4];
  return int32_t(j < 4 ? byte & 15 : byte >> 4) - 8;
}

int32_t int4cb_index(const Int4CbWeight& w, int64_t n, int64_t k) {
  const int64_t b = n / kBlock, c = n % kBlock, o = k / 8, j = k % 8;
  const uint8_t byte = w.data[(b * (w.kp / 8) + o) * 64 + 4 * c + j % 4];
  return j < 4 ? byte & 15 : byte >> 4;
}

// q of x[k0, k1) with the group's scale; false if a value is not finite.
bool quantize(const float* x, int64_t k0, int64_t k1, std::vector<int32_t>& q, float& scale) {
  float amax = 0.0f;
  for (int64_t i = k0; i < k1; ++i) {
    if (!std::isfinite(x[i])) return false;
    amax = std::fmax(amax, std::fabs(x[i]));
  }
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  scale = amax / 127.0f;
  for (int64_t i = k0; i < k1; ++i) q[i] = static_cast<int32_t>(std::fmin(127.0f, std::fmax(-127.0f, std::nearbyint(x[i] * inv))));
  return true;
}

}  // namespace

bool qmatmul_int8_ref(const float* x, int64_t m, int64_t ldx, const Int8Weight& w, const float* bias, float* y,
                      int64_t ldy) {
  std::vector<int32_t> q(w.k);
  std::vector<float> rows_out(w.n);
  for (int64_t r = 0; r < m; ++r) {
    float scale;
    if (!quantize(x + r * ldx, 0, w.k, q, scale)) return false;
    for (int64_t n = 0; n < w.n; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < w.k; ++k) acc += int64_t(q[k]) * int8_at(w, n, k);
      rows_out[n] = std::fma(float(acc), scale * w.scales[n], bias ? bias[n] : 0.0f);
    }
    for (int64_t n = 0; n < w.n; ++n) y[r * ldy + n] = rows_out[n];
  }
  return true;
}

namespace {

// The grouped formats (int4, grouped int8): value(n, k) the integer weight, scale(n, g) the
// float scale of channel n's group g.
template <class Value, class Scale>
bool grouped_ref(const float* x, int64_t m, int64_t ldx, int64_t n_total, int64_t k_total, int64_t group,
                 int64_t kp, Value value, Scale scale, const float* bias, float* y, int64_t ldy) {
  const int64_t groups = kp / group;
  std::vector<int32_t> q(k_total);
  std::vector<float> scales(groups), rows_out(n_total);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * group, k1 = std::min(k0 + group, k_total);
      if (!quantize(x + r * ldx, k0, k1, q, scales[g])) return false;
    }
    for (int64_t n = 0; n < n_total; ++n) {
      float out = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int64_t acc = 0;
        for (int64_t k = g * group; k < std::min((g + 1) * group, k_total); ++k) acc += int64_t(q[k]) * value(n, k);
        out = std::fma(float(acc), scales[g] * scale(n, g), out);
      }
      rows_out[n] = out + (bias ? bias[n] : 0.0f);
    }
    for (int64_t n = 0; n < n_total; ++n) y[r * ldy + n] = rows_out[n];
  }
  return true;
}

}  // namespace

bool qmatmul_int4_ref(const float* x, int64_t m, int64_t ldx, const Int4Weight& w, const float* bias, float* y,
                      int64_t ldy) {
  const int64_t groups = w.kp / w.group;
  return grouped_ref(
      x, m, ldx, w.n, w.k, w.group, w.kp, [&](int64_t n, int64_t k) { return int4_at(w, n, k); },
      [&](int64_t n, int64_t g) { return w.scales[((n / kBlock) * groups + g) * kBlock + n % kBlock]; }, bias, y,
      ldy);
}

bool qmatmul_int8g_ref(const float* x, int64_t m, int64_t ldx, const Int8GWeight& w, const float* bias, float* y,
                       int64_t ldy) {
  const int64_t groups = w.kp / w.group;
  return grouped_ref(
      x, m, ldx, w.n, w.k, w.group, w.kp, [&](int64_t n, int64_t k) { return int8g_at(w, n, k); },
      [&](int64_t n, int64_t g) { return e6m10_value(w.scales[((n / kBlock) * groups + g) * kBlock + n % kBlock]); },
      bias, y, ldy);
}

bool qmatmul_int4cb_ref(const float* x, int64_t m, int64_t ldx, const Int4CbWeight& w, const float* bias, float* y,
                        int64_t ldy) {
  const int64_t supers = w.supers();
  std::vector<int32_t> q(w.k);
  std::vector<float> scales(supers), rows_out(w.n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t s = 0; s < supers; ++s)
      if (!quantize(x + r * ldx, s * kSuper, std::min((s + 1) * kSuper, w.k), q, scales[s])) return false;
    for (int64_t n = 0; n < w.n; ++n) {
      float out = 0.0f;
      for (int64_t s = 0; s < supers; ++s) {
        const uint8_t* sb = w.scales + ((n / kBlock) * supers + s) * kCbScaleBytes;
        int64_t total = 0;
        for (int64_t j = 0; j < kSuper / kSub; ++j) {
          int64_t acc = 0;
          for (int64_t k = s * kSuper + j * kSub; k < std::min(s * kSuper + (j + 1) * kSub, w.k); ++k)
            acc += int64_t(q[k]) * kCodebook[int4cb_index(w, n, k)];
          total += cb_sub_scale(sb, n % kBlock, j) * acc;
        }
        out = std::fma(float(total), cb_super_scale(sb, n % kBlock) * scales[s], out);
      }
      rows_out[n] = out + (bias ? bias[n] : 0.0f);
    }
    for (int64_t n = 0; n < w.n; ++n) y[r * ldy + n] = rows_out[n];
  }
  return true;
}

}  // namespace ember::qmatmul
