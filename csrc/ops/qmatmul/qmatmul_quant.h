// Activation quantization (see qmatmul.h for the formula) in plain C++, for the
// generic and AVX2 kernel sets (with AVX2 flags the compiler turns nearbyint into
// vector rounding); the VNNI set has its own AVX-512 version of the same
// arithmetic. Anonymous namespace: each translation unit keeps its own copy.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

namespace ember::qmatmul {
namespace {

bool quantize_rows(const float* x, int64_t rows, int64_t ldx, int64_t k, int64_t kp, int64_t group, uint8_t* qu,
                   int8_t* qs, float* scale, int32_t* sums) {
  const int64_t groups = kp / group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * group, k1 = k0 + group < k ? k0 + group : k;
      float amax = 0.0f;
      bool ok = true;
      for (int64_t i = k0; i < k1; ++i) {
        const float a = std::fabs(xr[i]);
        ok &= a <= FLT_MAX;  // false for NaN and infinities
        amax = a > amax ? a : amax;
      }
      if (!ok) return false;  // never convert a NaN or an infinity to an integer
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      scale[r * groups + g] = amax / 127.0f;
      int8_t* qsr = qs + r * kp;
      uint8_t* qur = qu + r * kp;
      int32_t sum = 0;
      for (int64_t i = k0; i < k1; ++i) {
        float q = std::nearbyint(xr[i] * inv);
        q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
        const int32_t qi = static_cast<int32_t>(q);
        qsr[i] = static_cast<int8_t>(qi);
        qur[i] = static_cast<uint8_t>(qi + 128);
        sum += qi;
      }
      for (int64_t i = k1 > k0 ? k1 : k0; i < k0 + group; ++i) {  // padding
        qsr[i] = 0;
        qur[i] = 128;
      }
      sums[r * groups + g] = sum;
    }
  }
  return true;
}

}  // namespace
}  // namespace ember::qmatmul
