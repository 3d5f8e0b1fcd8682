// The quantized-matmul kernels in plain C++ (any x86-64): the packed layout
// read one value at a time, int32 accumulators, the documented epilogue.
#include <cmath>
#include <utility>

#include "ops/qmatmul/qmatmul.h"
#include "ops/qmatmul/qmatmul_quant.h"

namespace ember::qmatmul {
namespace {

// y[r, n] = value(blk, c, ar) + bias[n] for rows [0, rows) and the channels of blocks [b0, b1):
// blk is block b's packed values, c the channel within it, ar row r's signed activations.
template <class Value>
void plain_outputs(const QuantRows& a, int64_t rows, int64_t n_total, const uint8_t* data, int64_t block_bytes,
                   int64_t b0, int64_t b1, const float* bias, float* y, int64_t ldy, Value value) {
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = data + b * block_bytes;
    for (int64_t c = 0; c < kBlock && b * kBlock + c < n_total; ++c) {
      const int64_t n = b * kBlock + c;
      for (int64_t r = 0; r < rows; ++r)
        y[r * ldy + n] = value(b, blk, c, a.qs + r * a.kp, r) + (bias ? bias[n] : 0.0f);
    }
  }
}

// The grouped formats' epilogue for row r: group(g) gives group g's integer sum and weight scale.
template <class Group>
float grouped_output(const QuantRows& a, int64_t r, int64_t groups, Group group) {
  float out = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
    const auto [acc, sw] = group(g);
    out = std::fma(float(acc), a.scale[r * groups + g] * sw, out);
  }
  return out;
}

void int4cb_tile_plain(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1,
                       const float* bias, float* y, int64_t ldy) {
  const int64_t supers = w.supers();
  plain_outputs(a, rows, w.n, w.data, w.kp / 8 * 64, b0, b1, bias, y, ldy,
                [&](int64_t b, const uint8_t* blk, int64_t c, const int8_t* ar, int64_t r) {
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
                  return out;
                });
}

void int8_tile(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  const int64_t quads = w.kp / 4;
  for (int64_t b = b0; b < b1; ++b) {
    const int8_t* blk = w.data + b * quads * 64;
    for (int64_t c = 0; c < kBlock && b * kBlock + c < w.n; ++c) {
      const int64_t n = b * kBlock + c;
      for (int64_t r = 0; r < rows; ++r) {
        const int8_t* ar = a.qs + r * a.kp;
        int32_t acc = 0;
        for (int64_t q = 0; q < quads; ++q)
          for (int j = 0; j < 4; ++j) acc += int32_t(ar[4 * q + j]) * int32_t(blk[q * 64 + 4 * c + j]);
        y[r * ldy + n] = std::fma(float(acc), a.scale[r] * w.scales[n], bias ? bias[n] : 0.0f);
      }
    }
  }
}

void int4_tile(const QuantRows& a, int64_t rows, const Int4Weight& w, int64_t b0, int64_t b1, const float* bias,
               float* y, int64_t ldy) {
  const int64_t groups = w.kp / w.group, per_group = w.group / 8;
  plain_outputs(a, rows, w.n, w.data, w.kp / 8 * 64, b0, b1, bias, y, ldy,
                [&](int64_t b, const uint8_t* blk, int64_t c, const int8_t* ar, int64_t r) {
                  return grouped_output(a, r, groups, [&](int64_t g) {
                    int32_t acc = 0;
                    for (int64_t o = g * per_group; o < (g + 1) * per_group; ++o)
                      for (int j = 0; j < 4; ++j) {
                        const uint8_t byte = blk[o * 64 + 4 * c + j];
                        acc += int32_t(ar[8 * o + j]) * (int32_t(byte & 15) - 8);
                        acc += int32_t(ar[8 * o + 4 + j]) * (int32_t(byte >> 4) - 8);
                      }
                    return std::pair(acc, w.scales[(b * groups + g) * kBlock + c]);
                  });
                });
}

void int8g_tile(const QuantRows& a, int64_t rows, const Int8GWeight& w, int64_t b0, int64_t b1, const float* bias,
                float* y, int64_t ldy) {
  const int64_t groups = w.kp / w.group, per_group = w.group / 4;
  plain_outputs(a, rows, w.n, w.data, w.kp / 4 * 64, b0, b1, bias, y, ldy,
                [&](int64_t b, const uint8_t* blk, int64_t c, const int8_t* ar, int64_t r) {
                  return grouped_output(a, r, groups, [&](int64_t g) {
                    int32_t acc = 0;
                    for (int64_t q = g * per_group; q < (g + 1) * per_group; ++q)
                      for (int j = 0; j < 4; ++j) acc += int32_t(ar[4 * q + j]) * (int32_t(blk[q * 64 + 4 * c + j]) - 128);
                    return std::pair(acc, e6m10_value(w.scales[(b * groups + g) * kBlock + c]));
                  });
                });
}

}  // namespace

extern const Kernels kernels_generic = {quantize_rows, int8_tile, int8g_tile, int4_tile, int4cb_tile_plain};

}  // namespace ember::qmatmul
