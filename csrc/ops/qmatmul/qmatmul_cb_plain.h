// The int4 codebook tile in plain C++ (the generic set, and the AVX2 set, whose
// compiler flags vectorise it): the packed layout read one value at a time,
// int32 sums, the documented epilogue. Anonymous namespace: one copy per ISA.
#pragma once

#include <cmath>

#include "ops/qmatmul/qmatmul.h"

namespace ember::qmatmul {
namespace {

void int4cb_tile_plain(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1,
                       const float* bias, float* y, int64_t ldy) {
  const int64_t octets = w.kp / 8, supers = w.supers();
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = w.data + b * octets * 64;
    for (int64_t c = 0; c < kBlock && b * kBlock + c < w.n; ++c) {
      const int64_t n = b * kBlock + c;
      for (int64_t r = 0; r < rows; ++r) {
        const int8_t* ar = a.qs + r * a.kp;
        float out = 0.0f;
        for (int64_t s = 0; s < supers; ++s) {
          const uint8_t* sb = w.scales + (b * supers + s) * kCbScaleBytes;
          int32_t total = 0;
          for (int64_t j = 0; j < kSuper / kSub && s * kSuper + j * kSub < w.kp; ++j) {
            int32_t acc = 0;
            for (int64_t o = (s * kSuper + j * kSub) / 8; o < (s * kSuper + (j + 1) * kSub) / 8; ++o)
              for (int i = 0; i < 4; ++i) {
                const uint8_t byte = blk[o * 64 + 4 * c + i];
                acc += int32_t(ar[8 * o + i]) * kCodebook[byte & 15];
                acc += int32_t(ar[8 * o + 4 + i]) * kCodebook[byte >> 4];
              }
            total += cb_sub_scale(sb, c, j) * acc;
          }
          out = std::fma(float(total), cb_super_scale(sb, c) * a.scale[r * supers + s], out);
        }
        y[r * ldy + n] = out + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace
}  // namespace ember::qmatmul
